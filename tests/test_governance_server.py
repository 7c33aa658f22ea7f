"""The approval protocol and tenant isolation on a real `mlflow server` with the governance
app and real users.

Each attack is tried as a user of the shared server would try it, through the REST routes
(both API prefixes); after it the sensors and the promotion job run as the daemon runs
them, with the service account's credentials. Every attack must end with Production,
Staging and the audit trail unchanged and the refusal explained. The whole module runs
twice: with the tests' permissions (every user EDIT by default, as `make dev` has it) and
as deploy/k8s/mlflow.yaml runs the server: nothing readable by default, every grant made by
the app from each tenant's users, over TLS that clients verify, under a `--static-prefix`.
"""

import json
import os
from pathlib import Path

import dagster as dg
import pytest
import requests
import sqlalchemy as sa
from click.testing import CliRunner
from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client
from mlflow.tracking import MlflowClient

from facilflow_assets.cli import main
from facilflow_assets.governance.audit import AuditTrail
from facilflow_assets.governance.digest import DIGEST_TAG, version_digest
from facilflow_assets.governance.requests import (
    DECISION,
    DECISION_BY,
    REQUEST_BY,
    REQUEST_STATUS,
    Decision,
    decide,
    request_production,
)
from facilflow_assets.governance.stages import STAGE_TAG, Stage
from facilflow_assets.governance.transitions import SYSTEM_ACTOR, GovernanceError, transition
from facilflow_assets.scope import ModelScope
from facilflow_assets.serving.models import ModelTampered, confirmed, download, load, resolve
from jobs.promotion import PromotionRefused, promotion_op_name
from resources import EventsResource, GovernanceResource, MlflowResource
from tests.lifecycle import lifecycle
from tests.mlflow_server import mlflow_server, postgres_database
from tests.tls import loopback_certificate

pytestmark = pytest.mark.slow

FLIGHT_DELAY = lifecycle()  # the demo tenant's flight-delay model, its jobs and sensors
SCOPE = FLIGHT_DELAY.scope
MODEL, EXPERIMENT, AUDIT = (
    SCOPE.registered_model_name,
    SCOPE.experiment_name,
    SCOPE.audit_experiment_name,
)
assert (MODEL, AUDIT) == ("demo.flight_delay", "/demo/flight_delay/audit")
APPROVERS = ["carol", "dave"]
SERVICE = "facilflow"
OTHER_TENANT = "globex"
OTHER_TENANT_APPROVER, OTHER_TENANT_USER, OTHER_TENANT_SERVICE = "erin", "frank", "facilflow-globex"
MODEL_READER = "facilflow-serving"  # what the endpoint's replicas load models as
# The server's settings, per tenant; the code location's governance resource reads the same.
APPROVERS_SETTING = f"demo={','.join(APPROVERS)};{OTHER_TENANT}={OTHER_TENANT_APPROVER}"
SERVICE_ACCOUNTS = f"demo={SERVICE};{OTHER_TENANT}={OTHER_TENANT_SERVICE}"
TENANT_USERS = f"demo=alice,mallory;{OTHER_TENANT}={OTHER_TENANT_USER}"
USERS = [
    SERVICE,
    "alice",
    "carol",
    "dave",
    "mallory",
    OTHER_TENANT_APPROVER,
    OTHER_TENANT_USER,
    OTHER_TENANT_SERVICE,
    MODEL_READER,
]
ADMIN_PASSWORD = "admin-password-1234"
# As deploy/k8s/mlflow.yaml sets it up, a password checked once a minute included.
AUTH_INI = """[mlflow]
default_permission = {default}
database_uri = sqlite:///{db}
admin_username = admin
admin_password = {password}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = 60

[facilflow]
service_accounts = {service_accounts}
tenant_users = {tenant_users}
model_readers = {model_readers}
"""
PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
# The governance rule's refusal, or MLflow's own permission check where it refuses first.
REFUSED = "service account|Permission denied"
STATIC_PREFIX = "/mlflow"
TLS_VARIABLE = "MLFLOW_TRACKING_SERVER_CERT_PATH"  # how MLflow's client verifies the server


def password(user: str) -> str:
    return ADMIN_PASSWORD if user == "admin" else f"{user}-password-1234"


@pytest.fixture(scope="module", params=["tests-permissions", "prod-permissions"])
def server(request, tmp_path_factory):
    isolated = request.param == "prod-permissions"
    root = tmp_path_factory.mktemp(request.param)
    ini = root / "auth.ini"
    ini.write_text(
        AUTH_INI.format(
            default="NO_PERMISSIONS" if isolated else "EDIT",
            db=root / "auth.db",
            password=ADMIN_PASSWORD,
            service_accounts=SERVICE_ACCOUNTS,
            tenant_users=TENANT_USERS,
            model_readers=MODEL_READER,
        )
    )
    env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "FACILFLOW_APPROVERS": APPROVERS_SETTING,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "facilflow-test-secret",
    }
    tls = loopback_certificate(root / "tls") if isolated else None
    # The identity the World switches to, and the CA it trusts, must not outlive the module.
    saved = {
        k: os.environ.get(k)
        for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", TLS_VARIABLE)
    }
    if tls:
        os.environ[TLS_VARIABLE] = str(tls.ca)
    try:
        with (
            postgres_database() as backend,
            mlflow_server(
                root / "artifacts",
                app_name="facilflow-governance",
                env=env,
                backend=backend,
                static_prefix=STATIC_PREFIX if isolated else "",
                tls=tls,
            ) as url,
        ):
            world = World(url, root / "artifacts", root, backend, isolated)
            world.provision()
            yield world
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.update({key: value})


class World:
    """The server, its users, and a model with a version in Production and one in Staging,
    both put there by the real protocol."""

    def __init__(self, url: str, artifacts: Path, root: Path, backend: str, isolated: bool):
        self.url, self.artifacts, self.root, self.backend = url, artifacts, root, backend
        self.isolated = isolated  # nothing readable by default, TLS, a static prefix
        self.server_root = url.removesuffix(STATIC_PREFIX) if isolated else url

    def client(self, user: str) -> MlflowClient:
        """A client acting as `user`: MLflow reads the credentials from the environment at
        each request, so the latest call to this decides who every client acts as."""
        os.environ["MLFLOW_TRACKING_USERNAME"] = user
        os.environ["MLFLOW_TRACKING_PASSWORD"] = password(user)
        return MlflowClient(self.url, self.url)

    def http(self, method: str, url: str, user: str, **arguments) -> requests.Response:
        """A request as `user`, verifying the server's certificate as the clients do."""
        return requests.request(
            method,
            url,
            auth=(user, password(user)),
            timeout=30,
            verify=os.environ.get(TLS_VARIABLE) or True,
            **arguments,
        )

    def post(self, user: str, path: str, body: dict, method: str = "POST") -> requests.Response:
        return self.http(method, f"{self.url}{path}", user, json=body)

    def provision(self) -> None:
        """The users, made by the admin after the server started; each one's permissions
        come from the settings alone, granted by the app."""
        self.client("admin")
        auth = get_app_client("basic-auth", tracking_uri=self.url)
        for user in USERS:
            auth.create_user(user, password(user))
        service = self.client(SERVICE)
        self.experiment_id = service.create_experiment(EXPERIMENT)
        service.create_registered_model(MODEL)
        self.production = self.staged_version()
        self.promote(self.production)
        self.staging = self.staged_version()

    def staged_version(self) -> str:
        """A version with real files, evaluated and staged as the registry asset does."""
        service = self.client(SERVICE)
        run = service.create_run(self.experiment_id, tags={"facilflow.evaluation": "passed"})
        folder = self.root / f"model-{run.info.run_id}"
        folder.mkdir()
        (folder / "MLmodel").write_text(f"run_id: {run.info.run_id}\n")
        (folder / "model.txt").write_text("tree\n")
        service.log_artifacts(run.info.run_id, str(folder), "model")
        version = str(
            service.create_model_version(
                MODEL, f"{run.info.artifact_uri}/model", run_id=run.info.run_id
            ).version
        )
        service.set_model_version_tag(MODEL, version, STAGE_TAG, Stage.NONE)
        digest = version_digest(service, MODEL, version)
        service.set_model_version_tag(MODEL, version, DIGEST_TAG, digest)
        transition(service, self.audit(service), MODEL, version, Stage.STAGING, SYSTEM_ACTOR, "ok")
        return version

    def audit(self, client: MlflowClient) -> AuditTrail:
        return AuditTrail(client, AUDIT)

    def promote(self, version: str) -> None:
        """alice requests, carol approves, the sensor orders it, the promotion job runs."""
        alice = self.client("alice")
        request_production(alice, self.audit(alice), MODEL, version, "alice", "AUC +2%")
        carol = self.client("carol")
        decide(
            carol, self.audit(carol), MODEL, version, "carol", Decision.APPROVED, "ok", APPROVERS
        )
        [order] = self.approval_tick().run_requests
        assert self.run_promotion(order).success

    def resources(self) -> dict:
        return {
            "mlflow": MlflowResource(tracking_uri=self.url, artifact_root="mlflow-artifacts:/"),
            "governance": GovernanceResource(approvers=APPROVERS_SETTING),
            "events": EventsResource(outbox_url=f"sqlite:///{self.root / 'outbox.db'}"),
        }

    def approval_tick(self) -> dg.SensorResult:
        self.client(SERVICE)
        with dg.build_sensor_context(resources=self.resources()) as context:
            return FLIGHT_DELAY.sensor("approval_sensor")(context)

    def redeploy_tick(self, cursor: str) -> dg.SensorResult | dg.SkipReason:
        self.client(SERVICE)
        resources = {k: v for k, v in self.resources().items() if k in ("mlflow", "events")}
        with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
            return FLIGHT_DELAY.sensor("redeploy_sensor")(context)

    def run_promotion(
        self, run_request: dg.RunRequest, tenant: str = SCOPE.tenant
    ) -> dg.ExecuteInProcessResult:
        """The run the order asks for, by the promotion job of `tenant`'s flight-delay model."""
        self.client(SERVICE)
        job = lifecycle(SCOPE.use_case, tenant).job("promotion_job", self.resources())
        return job.execute_in_process(
            run_config=run_request.run_config, tags=run_request.tags, raise_on_error=False
        )

    def state(self) -> tuple:
        """What no attack may change: the aliases, the stage tags and the audit trail."""
        service = self.client(SERVICE)
        aliases = service.get_registered_model(MODEL).aliases
        stages = {
            str(v.version): v.tags.get(STAGE_TAG)
            for v in service.search_model_versions(f"name = '{MODEL}'")
        }
        trail = [
            (r.version, r.action, r.actor, r.stamp) for r in self.audit(service).history(MODEL)
        ]
        return dict(aliases), stages, trail

    def violations(self) -> list[dict]:
        outbox = self.resources()["events"].outbox()
        return [
            json.loads(e.body)
            for e in outbox.waiting(limit=1000)
            if e.event_type == "MODEL_GOVERNANCE_VIOLATION"
        ]


def _refused(response: requests.Response, words: str) -> None:
    """Refused with the governance rule's reason, or by MLflow's own permission check, which
    runs first and already refuses some of these writes to users without MANAGE."""
    assert response.status_code in (401, 403), (response.status_code, response.text)
    assert words in response.text or response.text == "Permission denied", response.text


def _the_daemon_acts_on_nothing(world: World) -> None:
    """The sensors and the promotion job as the daemon would run them: no promotion, and
    the endpoint's version stays the audited Production one."""
    for run_request in world.approval_tick().run_requests or []:
        assert not world.run_promotion(run_request).success
    redeploy = world.redeploy_tick(world.production)
    assert not getattr(redeploy, "run_requests", None)


def test_the_real_protocol_promotes_and_the_daemon_deploys_it(server):
    world = server
    service = world.client(SERVICE)
    assert confirmed(service, MODEL, "Production").version == world.production
    assert confirmed(service, MODEL, "Staging").version == world.staging
    actions = [(r.version, r.action, r.actor) for r in world.audit(service).history(MODEL)]
    assert (world.production, "request", "alice") in actions
    assert (world.production, "approval", "carol") in actions
    assert (world.production, "transition", "carol") in actions
    [deploy] = world.redeploy_tick("none").run_requests
    assert deploy.run_key == f"deploy:{MODEL}:v{world.production}:after:none"


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("user", ["mallory", "alice", "carol"])
def test_1_no_user_moves_the_production_or_staging_alias(server, prefix, user):
    before = server.state()
    for alias in ("production", "staging", "Production"):
        body = {"name": MODEL, "alias": alias, "version": server.staging}
        _refused(server.post(user, f"{prefix}/registered-models/alias", body), "service account")
        body = {"name": MODEL, "alias": alias}
        response = server.post(user, f"{prefix}/registered-models/alias", body, "DELETE")
        _refused(response, "service account")
    assert server.state() == before
    _the_daemon_acts_on_nothing(server)
    assert server.state() == before


def test_1_even_the_service_account_moves_production_only_after_an_audited_approval(server):
    before = server.state()
    body = {"name": MODEL, "alias": "production", "version": server.staging}
    _refused(
        server.post(SERVICE, f"{PREFIXES[0]}/registered-models/alias", body), "audited approval"
    )
    assert server.state() == before


@pytest.mark.parametrize("user", ["mallory", "alice", "carol", OTHER_TENANT_APPROVER])
def test_2_a_version_created_with_stage_request_and_decision_tags_is_refused(server, user):
    before = server.state()
    service = server.client(SERVICE)
    source = service.get_model_version(MODEL, server.staging).source
    forged = {
        STAGE_TAG: "Staging",
        REQUEST_BY: "alice",
        REQUEST_STATUS: "pending",
        DECISION: "approved",
        DECISION_BY: "dave",
        DIGEST_TAG: "sha256:0",
    }
    for prefix in PREFIXES:
        body = {
            "name": MODEL,
            "source": source,
            "tags": [{"key": k, "value": v} for k, v in forged.items()],
        }
        _refused(server.post(user, f"{prefix}/model-versions/create", body), "service account")
    assert server.state() == before
    _the_daemon_acts_on_nothing(server)
    assert server.state() == before


def test_2_a_requester_cannot_approve_their_own_request_nor_another_tenant_decide(server):
    world = server
    alice = world.client("alice")
    request_production(alice, world.audit(alice), MODEL, world.staging, "alice", "please")
    try:
        # Another tenant's approver, where nothing is readable by default, is refused by
        # MLflow itself: the model is not theirs to write.
        outsider = OTHER_TENANT_APPROVER
        for user, words in (
            ("alice", "alice is not a designated approver"),
            ("mallory", "mallory is not a designated approver"),
            (
                outsider,
                "Permission denied"
                if world.isolated
                else f"{outsider} is not a designated approver",
            ),
        ):
            client = world.client(user)
            with pytest.raises(MlflowException, match=words):
                client.set_model_version_tag(MODEL, world.staging, DECISION, "approved")
        before = world.state()
        _the_daemon_acts_on_nothing(world)
        assert world.state() == before
    finally:
        _close_request(world, world.staging)


def test_2_an_approver_who_requested_cannot_decide_and_decisions_are_stamped(server):
    world = server
    carol = world.client("carol")
    request_production(carol, world.audit(carol), MODEL, world.staging, "carol", "mine")
    try:
        with pytest.raises(MlflowException, match="carol requested this transition"):
            carol.set_model_version_tag(MODEL, world.staging, DECISION, "approved")
        dave = world.client("dave")
        with pytest.raises(MlflowException, match="must name the authenticated user dave"):
            dave.set_model_version_tag(MODEL, world.staging, DECISION_BY, "carol")
        dave.set_model_version_tag(MODEL, world.staging, DECISION, "rejected")  # as in the UI
        tags = dave.get_model_version(MODEL, world.staging).tags
        assert (tags[DECISION], tags[DECISION_BY]) == ("rejected", "dave")
        with pytest.raises(MlflowException, match="already rejected by dave"):
            dave.set_model_version_tag(MODEL, world.staging, DECISION, "approved")
    finally:
        _close_request(world, world.staging)


def _close_request(world: World, version: str) -> None:
    """The service closes a request the test left open (as the sensor closes a refusal)."""
    service = world.client(SERVICE)
    service.set_model_version_tag(MODEL, version, REQUEST_STATUS, "refused")


def test_3_an_approved_models_files_cannot_be_replaced_and_a_replacement_is_refused(server):
    world = server
    service = world.client(SERVICE)
    version = service.get_model_version(MODEL, world.production)
    run_id = version.run_id
    experiment = service.get_run(run_id).info.experiment_id
    path = f"{experiment}/{run_id}/artifacts/model/MLmodel"
    # Under a static prefix MLflow serves the artifact routes twice: Flask's under the
    # prefix, and FastAPI's own uploads at the server's root. Both are governed.
    bases = {world.url, world.server_root}
    for user in ("mallory", "alice", "carol"):
        for base in bases:
            for prefix in ("/api/2.0", "/ajax-api/2.0"):
                artifacts = f"{base}{prefix}/mlflow-artifacts/artifacts"
                response = world.http("PUT", f"{artifacts}/{path}", user, data=b"flavors: {}\n")
                _refused(response, "registered version's files")
                response = world.http("DELETE", f"{artifacts}/{experiment}/{run_id}", user)
                _refused(response, "registered version's files")
    ref = confirmed(service, MODEL, "Production")
    assert ref.digest == version_digest(service, MODEL, world.production)

    # Past the server (a write straight into the bucket): every loader refuses the files.
    stored = world.artifacts / path
    original = stored.read_bytes()
    stored.write_bytes(b"flavors: {}\n")
    try:
        with pytest.raises(ModelTampered, match="not the .* that were evaluated and approved"):
            load(service, resolve(service, MODEL, "Production"))
    finally:
        stored.write_bytes(original)


def test_4_a_refused_or_archived_request_is_not_revived_nor_an_evaluation_rewritten(server):
    world = server
    run_id = world.client(SERVICE).get_model_version(MODEL, world.staging).run_id
    before = world.state()
    for user in ("mallory", "alice"):
        client = world.client(user)
        with pytest.raises(MlflowException, match="service account"):
            client.set_model_version_tag(MODEL, world.staging, STAGE_TAG, "Production")
        with pytest.raises(MlflowException, match=REFUSED):
            client.set_tag(run_id, "facilflow.evaluation", "passed")
        with pytest.raises(MlflowException, match=REFUSED):
            client.delete_tag(run_id, "facilflow.evaluation")
    assert world.state() == before
    # A newer staged version archives this one, which never held Production: it cannot be
    # requested back, and its closed request cannot be set pending again.
    archived, world.staging = world.staging, world.staged_version()
    before = world.state()
    assert before[1][archived] == "Archived"
    alice = world.client("alice")
    with pytest.raises(GovernanceError, match="never held Production"):  # the CLI's check
        request_production(alice, world.audit(alice), MODEL, archived, "alice", "again")
    alice.set_model_version_tag(MODEL, archived, REQUEST_BY, "alice")  # no request pending
    with pytest.raises(MlflowException, match="never held Production"):  # the server's
        alice.set_model_version_tag(MODEL, archived, REQUEST_STATUS, "pending")
    with pytest.raises(MlflowException, match="service account"):
        alice.set_model_version_tag(MODEL, archived, STAGE_TAG, "Staging")
    assert world.state() == before
    _the_daemon_acts_on_nothing(world)
    assert world.state() == before


def test_5_the_audit_trail_cannot_be_written_or_rewritten_by_users(server):
    world = server
    before = world.state()
    service = world.client(SERVICE)
    audit_id = service.get_experiment_by_name(AUDIT).experiment_id
    record = service.search_runs([audit_id], max_results=1)[0].info.run_id
    for user in ("mallory", "alice", "carol"):
        client = world.client(user)
        with pytest.raises(MlflowException, match=REFUSED):
            client.create_run(audit_id, tags={"facilflow.audit.action": "transition"})
        with pytest.raises(MlflowException, match=REFUSED):
            client.set_tag(record, "facilflow.audit.actor", "mallory")
        with pytest.raises(MlflowException, match=REFUSED):
            client.delete_run(record)
        with pytest.raises(MlflowException, match=REFUSED):
            client.rename_experiment(audit_id, "/demo/flight_delay/audit-old")
        with pytest.raises(MlflowException, match=REFUSED):
            client.delete_experiment(audit_id)
        with pytest.raises(MlflowException, match=REFUSED):
            client.create_experiment("/demo/other/audit")
    assert world.state() == before


def test_5_a_rollback_by_a_plain_user_is_only_a_request_until_an_approver_decides(server):
    world = server
    earlier = world.production
    world.promote(world.staging)  # a second version in Production: a rollback has a target
    world.production, world.staging = world.staging, world.staged_version()
    before = world.state()
    runner = CliRunner()
    env = {
        "FACILFLOW_ENV": "prod",
        "MLFLOW_TRACKING_URI": world.url,
        "MLFLOW_TRACKING_USERNAME": "mallory",
        "MLFLOW_TRACKING_PASSWORD": password("mallory"),
        "FACILFLOW_APPROVERS": APPROVERS_SETTING,
        "FACILFLOW_ARTIFACT_ROOT": "mlflow-artifacts:/",
        "FACILFLOW_OUTBOX_URL": f"sqlite:///{world.root / 'cli-outbox.db'}",
        "KAFKA_BOOTSTRAP_SERVERS": "",
    }
    command = [
        "--tenant",
        SCOPE.tenant,
        "models",
        "--use-case",
        SCOPE.use_case,
        "rollback",
        "--comment",
        "v2 misbehaves",
    ]
    result = runner.invoke(main, command, env=env)
    assert result.exit_code == 0, result.output
    assert f"version {earlier} back in Production (a rollback)" in result.output
    aliases, stages, trail = world.state()
    assert (aliases, stages) == before[:2]  # nothing moved
    assert trail[: len(before[2])] == before[2]
    assert [(v, action, actor) for v, action, actor, _ in trail[len(before[2]) :]] == [
        (earlier, "request", "mallory")
    ]
    _the_daemon_acts_on_nothing(world)  # no approver decided
    assert world.state()[:2] == before[:2]
    dave = world.client("dave")  # an approver decides: the rollback is carried out
    decide(dave, world.audit(dave), MODEL, earlier, "dave", Decision.APPROVED, "yes", APPROVERS)
    [order] = world.approval_tick().run_requests
    assert world.run_promotion(order).success
    assert confirmed(world.client(SERVICE), MODEL, "Production").version == earlier
    last = world.audit(world.client(SERVICE)).history(MODEL)
    assert ("rollback", earlier, "dave") in [(r.action, r.version, r.actor) for r in last]
    world.production = earlier


def test_6_tenant_models_cannot_be_renamed_deleted_or_squatted(server):
    world = server
    before = world.state()
    for user in ("mallory", "alice", "carol"):
        for prefix in PREFIXES:
            body = {"name": MODEL, "new_name": "demo.flight_delay_old"}
            _refused(
                world.post(user, f"{prefix}/registered-models/rename", body), "service account"
            )
            body = {"name": MODEL}
            response = world.post(user, f"{prefix}/registered-models/delete", body, "DELETE")
            _refused(response, "service account")
            body = {"name": MODEL, "version": world.production}
            response = world.post(user, f"{prefix}/model-versions/delete", body, "DELETE")
            _refused(response, "service account")
            body = {"name": "demo.churn"}
            _refused(
                world.post(user, f"{prefix}/registered-models/create", body), "service account"
            )
            body = {"name": MODEL, "version": world.staging, "stage": "Production"}
            response = world.post(user, f"{prefix}/model-versions/transition-stage", body)
            _refused(response, "transition-stage is refused")
    assert world.state() == before


def test_7_an_alias_moved_past_the_app_is_reported_and_not_deployed(server):
    """Defence in depth: with the alias moved straight in the database (no route can), the
    redeploy sensor finds no record of the move, reports it and deploys nothing."""
    world = server
    service = world.client(SERVICE)
    engine = sa.create_engine(world.backend)
    with engine.begin() as connection:
        previous = connection.execute(
            sa.text("SELECT version FROM registered_model_aliases WHERE alias = 'production'")
        ).scalar_one()
        connection.execute(
            sa.text("UPDATE registered_model_aliases SET version = :v WHERE alias = 'production'"),
            {"v": int(world.staging)},
        )
    try:
        result = world.redeploy_tick(world.production)
        assert not result.run_requests
        [check] = result.asset_events
        assert check.passed is False and f"points at version {world.staging}" in check.description
        assert any(
            f"points at version {world.staging}" in v["payload"]["problem"]
            for v in world.violations()
        )
        with pytest.raises(Exception, match="audit trail"):
            confirmed(service, MODEL, "Production")
    finally:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "UPDATE registered_model_aliases SET version = :v WHERE alias = 'production'"
                ),
                {"v": previous},
            )
        engine.dispose()


def test_8_a_tenants_promotion_job_refuses_an_order_for_another_tenants_model(server):
    """An order for demo's model, approved by demo's approvers, run by acme's promotion job
    (the same op name: both run flight_delay) is refused before the registry is touched."""
    world = server
    before = world.state()
    order = {
        "model": MODEL,
        "version": world.staging,
        "source_run": "",
        "requested_by": "alice",
        "approved_by": "carol",
        "decided_at": "2026-01-01T00:00:00+00:00",
        "comment": "not acme's",
    }
    acme = lifecycle(SCOPE.use_case, "acme").scope
    assert promotion_op_name(acme) == promotion_op_name(SCOPE)
    run_request = dg.RunRequest(
        run_config={"ops": {promotion_op_name(acme): {"config": order}}}, tags={}
    )
    result = world.run_promotion(run_request, tenant="acme")
    assert not result.success
    [failure] = [event for event in result.all_events if event.is_step_failure]
    error = failure.event_specific_data.error
    assert error.cause.cls_name == PromotionRefused.__name__
    assert f"promotes acme.flight_delay versions, not {MODEL}'s" in error.cause.message
    assert world.state() == before


def _unreadable(read) -> None:
    """`read` is refused by MLflow's permission check (some searches answer with nothing)."""
    try:
        found = read()
    except MlflowException as error:
        assert error.error_code == "PERMISSION_DENIED", error
    else:
        assert not found, found


def test_9_a_tenants_experiments_runs_models_and_artifacts_are_read_by_its_users_only(server):
    world = server
    if not world.isolated:
        pytest.skip("with the tests' permissions every user reads everything, as in `make dev`")
    # The other tenant's use case, made as its jobs make it: its service account, the
    # server's artifact store (so under the experiment's id), a run with files, a model.
    globex = ModelScope(OTHER_TENANT, SCOPE.use_case)
    theirs = world.client(OTHER_TENANT_SERVICE)
    tracking = MlflowResource(tracking_uri=world.url, artifact_root="mlflow-artifacts:/")
    experiment = tracking.ensure_experiment(globex)
    assert experiment.artifact_location == f"mlflow-artifacts:/{experiment.experiment_id}"
    their_run = theirs.create_run(experiment.experiment_id)
    theirs.log_text(their_run.info.run_id, "globex's secret\n", "notes.txt")
    theirs.create_registered_model(globex.registered_model_name)

    service = world.client(SERVICE)
    ours = service.get_model_version(MODEL, world.production)
    files = f"{world.experiment_id}/{ours.run_id}/artifacts/model/MLmodel"
    for outsider in (OTHER_TENANT_USER, OTHER_TENANT_APPROVER, OTHER_TENANT_SERVICE):
        client = world.client(outsider)
        _unreadable(lambda c=client: c.get_experiment(world.experiment_id))
        _unreadable(lambda c=client: c.get_experiment_by_name(EXPERIMENT))
        _unreadable(lambda c=client: c.get_experiment_by_name(AUDIT))
        _unreadable(lambda c=client: c.get_run(ours.run_id))
        _unreadable(lambda c=client: c.search_runs([world.experiment_id]))
        _unreadable(lambda c=client: c.list_artifacts(ours.run_id))
        _unreadable(lambda c=client: c.get_registered_model(MODEL))
        _unreadable(lambda c=client: c.get_model_version(MODEL, world.production))
        _unreadable(lambda c=client: c.get_model_version_download_uri(MODEL, world.production))
        _unreadable(lambda c=client: c.search_model_versions(f"name = '{MODEL}'"))
        _unreadable(lambda c=client: AuditTrail(c, AUDIT).history(MODEL))
        listed = [e.name for e in client.search_experiments()]
        assert not [name for name in listed if name.startswith("/demo/")], listed
        assert not [m.name for m in client.search_registered_models() if m.name == MODEL]
        for base in {world.url, world.server_root}:  # Flask's route and FastAPI's own
            for prefix in ("/api/2.0", "/ajax-api/2.0"):
                response = world.http(
                    "GET", f"{base}{prefix}/mlflow-artifacts/artifacts/{files}", outsider
                )
                assert response.status_code == 403, (base, prefix, response.text)
        with pytest.raises(MlflowException, match="tenant demo's; .* not one of its members"):
            client.create_experiment("/demo/exploration")

    # The tenant's own users read all of it, and nothing of the other tenant's.
    alice = world.client("alice")
    assert alice.get_run(ours.run_id).info.experiment_id == world.experiment_id
    assert [a.path for a in alice.list_artifacts(ours.run_id)] == ["model"]
    assert alice.get_registered_model(MODEL).name == MODEL
    trail = AuditTrail(alice, AUDIT).history(MODEL)
    assert ("request", "alice") in [(r.action, r.actor) for r in trail]
    response = world.http("GET", f"{world.url}/api/2.0/mlflow-artifacts/artifacts/{files}", "alice")
    assert response.status_code == 200 and response.content.startswith(b"run_id:")
    listed = {e.name for e in alice.search_experiments()}
    assert {EXPERIMENT, AUDIT} <= listed and globex.experiment_name not in listed
    _unreadable(lambda: alice.get_run(their_run.info.run_id))
    _unreadable(lambda: alice.get_registered_model(globex.registered_model_name))
    # ...and may read but not write what a service account keeps.
    with pytest.raises(MlflowException, match="Permission denied|PERMISSION_DENIED"):
        alice.set_tag(ours.run_id, "note", "mine now")

    # The endpoint's account loads any tenant's approved model, and writes nothing.
    reader = world.client(MODEL_READER)
    served = download(reader, confirmed(reader, MODEL, "Production"), world.root / "served")
    assert (served / "model.txt").read_text() == "tree\n"
    with pytest.raises(MlflowException, match="Permission denied|PERMISSION_DENIED"):
        reader.set_registered_model_tag(MODEL, "note", "mine now")
    frank = world.client(OTHER_TENANT_USER)
    assert [a.path for a in frank.list_artifacts(their_run.info.run_id)] == ["notes.txt"]
