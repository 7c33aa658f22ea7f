"""The MLflow UI of `make dev` (facilflow_assets/dev_server.py): its settings files, and
the governance app serving the demo users with them, every tenant's approvers deciding for
their own tenant's models."""

import configparser
import stat
from pathlib import Path

import pytest
import requests

from facilflow_assets import dev_server, locations
from facilflow_assets.approvers import approvers_of
from facilflow_assets.dev_server import ADMIN, create_users, demo_users, write_config
from facilflow_assets.environment import server_governance_settings
from facilflow_assets.governance.requests import DECISION
from facilflow_assets.scope import ModelScope
from facilflow_assets.tenants import load_tenants
from tests.mlflow_server import mlflow_server

pytestmark = pytest.mark.slow

MODEL = "demo.flight_delay"
OTHER_MODEL = "acme.flight_delay"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_settings_parse_are_private_and_keep_their_secrets(tmp_path, monkeypatch):
    directory = tmp_path / "mlflow"
    first = write_config(directory)
    auth = configparser.ConfigParser()  # as MLflow's basic auth reads it
    assert auth.read(first.auth_ini) == [str(first.auth_ini)]
    assert auth["facilflow"]["service_accounts"] == "facilflow"
    assert auth["mlflow"]["default_permission"] == "EDIT"
    assert auth["mlflow"].getint("auth_cache_ttl_seconds") == 60  # a password check per minute
    assert auth["mlflow"]["database_uri"] == f"sqlite:///{directory / 'auth.db'}"
    assert auth["mlflow"]["admin_username"] == ADMIN
    assert auth["mlflow"]["admin_password"] == first.passwords[ADMIN]
    # As the governance app reads it, with the server's environment.
    for name, value in first.server_env().items():
        monkeypatch.setenv(name, value)
    assert server_governance_settings() == {
        "service_accounts": "facilflow",
        "approvers": "demo=carol,dave;acme=erin",
        "tenant_users": "",
        "model_readers": "",
    }

    assert set(first.passwords) == {"alice", "carol", "dave", "erin", "facilflow", ADMIN}
    assert len(set(first.passwords.values())) == len(first.passwords)
    assert all(len(p) >= 12 and p != "password1234" for p in first.passwords.values())
    assert len(first.secret_key) >= 32
    kept = configparser.ConfigParser(interpolation=None)
    kept.optionxform = str
    kept.read(first.credentials)
    assert dict(kept["users"]) == first.passwords
    assert kept["server"]["flask_secret_key"] == first.secret_key
    for path in (first.auth_ini, first.credentials):
        assert _mode(path) == 0o600, path

    second = write_config(directory)  # a second `make dev`
    assert (second.passwords, second.secret_key) == (first.passwords, first.secret_key)
    assert second.auth_ini.read_text() == first.auth_ini.read_text()
    for path in (second.auth_ini, second.credentials):
        assert _mode(path) == 0o600, path


def test_the_server_has_every_tenants_approvers_as_its_location_does(tmp_path):
    env = write_config(tmp_path).server_env()
    assert env["FACILFLOW_APPROVERS"] == dev_server.APPROVERS
    assert env["MLFLOW_BASIC_AUTH_FAIL_CLOSED"] == "true"
    tenants = load_tenants()
    assert dev_server.APPROVERS == ";".join(
        f"{name}={','.join(spec.approvers)}" for name, spec in tenants.items()
    )
    for tenant, spec in tenants.items():
        # The server app and the tenant's code location name the same approvers per model.
        governance = getattr(locations, tenant).resources["governance"]
        for use_case in spec.use_cases:
            model = ModelScope(tenant, use_case).registered_model_name
            assert approvers_of(dev_server.APPROVERS, model) == spec.approvers, model
            assert governance.approvers_of(model) == spec.approvers, model
        # `make dev` serves every tenant: each approver can sign in.
        assert all(name in demo_users() for name in spec.approvers), tenant
    assert approvers_of(dev_server.APPROVERS, "globex.flight_delay") == []


def test_a_users_store_made_with_a_lost_admin_password_is_made_again(tmp_path):
    config = write_config(tmp_path)
    config.auth_db.write_bytes(b"users")
    write_config(tmp_path)
    assert config.auth_db.exists()  # kept: its admin password is the kept one
    config.credentials.unlink()
    again = write_config(tmp_path)
    assert not again.auth_db.exists()
    assert again.passwords[ADMIN] != config.passwords[ADMIN]


def test_the_governance_app_serves_the_demo_users(tmp_path):
    directory = tmp_path / "mlflow"
    config = write_config(directory)
    with mlflow_server(
        directory / "artifacts",
        app_name=dev_server.APP_NAME,
        env=config.server_env(),
        backend=f"sqlite:///{directory / 'mlflow.db'}",
    ) as url:
        create_users(url, config)
        create_users(url, config)  # a second start finds them
        for name in demo_users():
            response = requests.get(
                f"{url}/api/2.0/mlflow/users/current",
                auth=(name, config.passwords[name]),
                timeout=30,
            )
            assert response.status_code == 200, (name, response.text)
            assert response.json()["user"]["username"] == name
        wrong = ("alice", "not-alices-password")
        assert requests.get(f"{url}/api/2.0/mlflow/users/current", auth=wrong).status_code == 401

        # The approval rules hold: the tenant's model is the service account's to create.
        create = f"{url}/api/2.0/mlflow/registered-models/create"
        alice = ("alice", config.passwords["alice"])
        refused = requests.post(create, json={"name": MODEL}, auth=alice, timeout=30)
        assert refused.status_code == 403, refused.text
        service = ("facilflow", config.passwords["facilflow"])
        made = requests.post(create, json={"name": MODEL}, auth=service, timeout=30)
        assert made.status_code == 200, made.text

        # Each tenant's approvers decide for its models alone: the app reads the
        # per-tenant setting (no request is pending, so an approver gets that far).
        users = {name: (name, config.passwords[name]) for name in demo_users()}
        for model, approver, outsider in ((MODEL, "carol", "erin"), (OTHER_MODEL, "erin", "dave")):
            version = _version(url, service, model)
            tag = f"{url}/api/2.0/mlflow/model-versions/set-tag"
            body = {"name": model, "version": version, "key": DECISION, "value": "approved"}
            refused = requests.post(tag, json=body, auth=users[outsider], timeout=30)
            assert refused.status_code == 403, refused.text
            assert f"{outsider} is not a designated approver of {model}" in refused.text
            allowed = requests.post(tag, json=body, auth=users[approver], timeout=30)
            assert allowed.status_code == 403, allowed.text
            assert "has no pending request to decide" in allowed.text
    assert _mode(config.auth_db) == 0o600


def _version(url: str, service: tuple[str, str], model: str) -> str:
    """A version of `model` (registered if new) from a run of its own, by the service
    account."""
    api = f"{url}/api/2.0/mlflow"
    if (
        requests.get(
            f"{api}/registered-models/get", params={"name": model}, auth=service, timeout=30
        ).status_code
        != 200
    ):
        made = requests.post(
            f"{api}/registered-models/create", json={"name": model}, auth=service, timeout=30
        )
        assert made.status_code == 200, made.text
    experiment = requests.post(
        f"{api}/experiments/create", json={"name": f"/{model}"}, auth=service, timeout=30
    )
    assert experiment.status_code == 200, experiment.text
    run = requests.post(
        f"{api}/runs/create",
        json={"experiment_id": experiment.json()["experiment_id"]},
        auth=service,
        timeout=30,
    ).json()["run"]["info"]
    version = requests.post(
        f"{api}/model-versions/create",
        json={"name": model, "source": f"{run['artifact_uri']}/model", "run_id": run["run_id"]},
        auth=service,
        timeout=30,
    )
    assert version.status_code == 200, version.text
    return version.json()["model_version"]["version"]
