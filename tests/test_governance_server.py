"""The approval protocol enforced by the project's MLflow server app, with real users."""

import pytest
from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client
from mlflow.tracking import MlflowClient

from facilflow_assets.governance.audit import AuditTrail
from facilflow_assets.governance.requests import (
    DECISION,
    DECISION_BY,
    Decision,
    decide,
    request_production,
)
from facilflow_assets.registry.stages import STAGE_TAG, Stage, move_to_stage
from tests.mlflow_server import mlflow_server

MODEL = "demo.flight_delay"
APPROVERS = ["carol", "dave"]
OTHER_TENANT_MODEL, OTHER_APPROVER = "globex.flight_delay", "erin"
USERS = ["alice", "carol", "dave", "mallory", OTHER_APPROVER]
ADMIN_PASSWORD = "admin-password-1234"
AUTH_INI = """[mlflow]
default_permission = EDIT
database_uri = sqlite:///{db}
admin_username = admin
admin_password = {password}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
"""


@pytest.fixture(scope="module")
def governed_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("governed")
    ini = root / "auth.ini"
    ini.write_text(AUTH_INI.format(db=root / "auth.db", password=ADMIN_PASSWORD))
    env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        # Approvers per tenant: demo's decide for demo's models, globex's for globex's.
        "FACILFLOW_APPROVERS": f"demo={','.join(APPROVERS)};globex={OTHER_APPROVER}",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "facilflow-test-secret",
    }
    with mlflow_server(root / "artifacts", app_name="facilflow-governance", env=env) as url:
        yield url


def _as(monkeypatch, user: str, password: str) -> None:
    """MLflow's client sends these credentials with every request."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)


@pytest.fixture(scope="module")
def staged_version(governed_server):
    with pytest.MonkeyPatch.context() as patch:
        _as(patch, "admin", ADMIN_PASSWORD)
        auth = get_app_client("basic-auth", tracking_uri=governed_server)
        for user in USERS:
            auth.create_user(user, f"{user}-password-1234")
        client = MlflowClient(governed_server, governed_server)
        experiment_id = client.create_experiment("/demo/flight_delay")
        run = client.create_run(experiment_id, tags={"facilflow.evaluation": "passed"})
        client.create_registered_model(MODEL)
        version = client.create_model_version(
            MODEL, f"{run.info.artifact_uri}/model", run_id=run.info.run_id
        )
        move_to_stage(client, MODEL, str(version.version), Stage.STAGING)
        return str(version.version)


def _client_as(monkeypatch, url: str, user: str):
    _as(monkeypatch, user, f"{user}-password-1234")
    client = MlflowClient(url, url)
    return client, AuditTrail(client, "/demo/flight_delay/audit")


def test_the_server_enforces_who_decides_and_stamps_the_approver(
    governed_server, staged_version, monkeypatch
):
    url, version = governed_server, staged_version
    client, audit = _client_as(monkeypatch, url, "alice")
    with pytest.raises(MlflowException, match="must name the authenticated user alice"):
        request_production(client, audit, MODEL, version, "bob", "pretending")
    assert not any(
        k.startswith("facilflow.request") for k in client.get_model_version(MODEL, version).tags
    )  # refused: nothing half-set
    request_production(client, audit, MODEL, version, "alice", "AUC +2%")
    # alice is no approver: the server refuses, whatever the client-side checks say.
    with pytest.raises(MlflowException, match="alice is not a designated approver"):
        client.set_model_version_tag(MODEL, version, DECISION, "approved")

    client, _ = _client_as(monkeypatch, url, "mallory")
    with pytest.raises(MlflowException, match="mallory is not a designated approver"):
        client.set_model_version_tag(MODEL, version, DECISION, "approved")

    client, _ = _client_as(monkeypatch, url, "dave")
    with pytest.raises(MlflowException, match="must name the authenticated user dave"):
        client.set_model_version_tag(MODEL, version, DECISION_BY, "carol")
    # A decision set by hand, as in the MLflow UI: the server writes who made it.
    client.set_model_version_tag(MODEL, version, DECISION, "approved")
    tags = client.get_model_version(MODEL, version).tags
    assert (tags[DECISION], tags[DECISION_BY]) == ("approved", "dave")
    assert tags[STAGE_TAG] == "Staging"


def test_a_requester_who_is_an_approver_cannot_decide_their_own_request(
    governed_server, monkeypatch
):
    url = governed_server
    client, audit = _client_as(monkeypatch, url, "admin")
    _as(monkeypatch, "admin", ADMIN_PASSWORD)
    admin = MlflowClient(url, url)
    experiment = admin.get_experiment_by_name("/demo/flight_delay")
    run = admin.create_run(experiment.experiment_id, tags={"facilflow.evaluation": "passed"})
    version = str(
        admin.create_model_version(
            MODEL, f"{run.info.artifact_uri}/m", run_id=run.info.run_id
        ).version
    )
    move_to_stage(admin, MODEL, version, Stage.STAGING)
    client, audit = _client_as(monkeypatch, url, "carol")
    request_production(client, audit, MODEL, version, "carol", "mine")
    with pytest.raises(MlflowException, match="carol requested this transition"):
        client.set_model_version_tag(MODEL, version, DECISION, "approved")
    client, _ = _client_as(monkeypatch, url, "dave")
    decide(client, MODEL, version, "dave", Decision.REJECTED, "not yet", APPROVERS)
    assert client.get_model_version(MODEL, version).tags[DECISION_BY] == "dave"


def test_an_approver_of_one_tenant_cannot_decide_for_another(
    governed_server, staged_version, monkeypatch
):
    url = governed_server
    _as(monkeypatch, "admin", ADMIN_PASSWORD)
    admin = MlflowClient(url, url)
    experiment_id = admin.create_experiment("/globex/flight_delay")
    run = admin.create_run(experiment_id, tags={"facilflow.evaluation": "passed"})
    admin.create_registered_model(OTHER_TENANT_MODEL)
    source = f"{run.info.artifact_uri}/m"
    other = str(admin.create_model_version(OTHER_TENANT_MODEL, source, run.info.run_id).version)
    move_to_stage(admin, OTHER_TENANT_MODEL, other, Stage.STAGING)
    client, audit = _client_as(monkeypatch, url, "alice")
    request_production(client, audit, OTHER_TENANT_MODEL, other, "alice", "globex's turn")
    for approver in APPROVERS:  # demo's approvers, on globex's model
        client, _ = _client_as(monkeypatch, url, approver)
        with pytest.raises(MlflowException, match=f"{approver} is not a designated approver "
                                                  f"of {OTHER_TENANT_MODEL}"):  # fmt: skip
            client.set_model_version_tag(OTHER_TENANT_MODEL, other, DECISION, "approved")
    assert DECISION not in client.get_model_version(OTHER_TENANT_MODEL, other).tags
    client, _ = _client_as(monkeypatch, url, OTHER_APPROVER)  # globex's, on demo's model
    with pytest.raises(MlflowException, match=f"{OTHER_APPROVER} is not a designated approver "
                                              f"of {MODEL}"):  # fmt: skip
        client.set_model_version_tag(MODEL, staged_version, DECISION, "rejected")
    client.set_model_version_tag(OTHER_TENANT_MODEL, other, DECISION, "approved")
    tags = client.get_model_version(OTHER_TENANT_MODEL, other).tags
    assert (tags[DECISION], tags[DECISION_BY]) == ("approved", OTHER_APPROVER)
