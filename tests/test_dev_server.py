"""The MLflow UI of `make dev` (facilflow_assets/dev_server.py): its settings files, and
the governance app serving the demo users with them."""

import configparser
import stat
from pathlib import Path

import requests

from facilflow_assets import dev_server
from facilflow_assets.dev_server import ADMIN, create_users, demo_users, write_config
from facilflow_assets.environment import server_governance_settings
from facilflow_assets.resource_map import LOCAL_APPROVERS
from tests.mlflow_server import mlflow_server

MODEL = "demo.flight_delay"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_settings_parse_are_private_and_keep_their_secrets(tmp_path, monkeypatch):
    directory = tmp_path / "mlflow"
    first = write_config(directory)
    auth = configparser.ConfigParser()  # as MLflow's basic auth reads it
    assert auth.read(first.auth_ini) == [str(first.auth_ini)]
    assert auth["facilflow"]["service_accounts"] == "facilflow"
    assert auth["mlflow"]["default_permission"] == "EDIT"
    assert auth["mlflow"]["database_uri"] == f"sqlite:///{directory / 'auth.db'}"
    assert auth["mlflow"]["admin_username"] == ADMIN
    assert auth["mlflow"]["admin_password"] == first.passwords[ADMIN]
    # As the governance app reads it, with the server's environment.
    for name, value in first.server_env().items():
        monkeypatch.setenv(name, value)
    assert server_governance_settings() == (frozenset({"facilflow"}), "carol,dave")

    assert set(first.passwords) == {"alice", "carol", "dave", "facilflow", ADMIN}
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


def test_the_server_has_the_local_environments_approvers(tmp_path):
    assert dev_server.APPROVERS == LOCAL_APPROVERS
    env = write_config(tmp_path).server_env()
    assert env["FACILFLOW_APPROVERS"] == LOCAL_APPROVERS
    assert env["MLFLOW_BASIC_AUTH_FAIL_CLOSED"] == "true"
    assert all(name in demo_users() for name in LOCAL_APPROVERS.split(","))


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
    assert _mode(config.auth_db) == 0o600
