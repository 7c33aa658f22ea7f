"""The MLflow UI of `make dev`: the local tracking store served by the governance server
app, with demo users, so the approval rules hold in the UI as on a real server.

    python -m facilflow_assets.dev_server DIR [--host 127.0.0.1] [--port 5000]

DIR is the working directory's `mlflow/` (the sqlite store `mlflow.db` and `artifacts/`).
There it writes MLflow's basic-auth settings (`auth.ini`, with the `[facilflow]` section
the app needs; the users' store is `auth.db`) and the demo users' credentials
(`dev-credentials.ini`): passwords and the Flask secret key, generated once and kept until
`make clean`, both files readable by their owner only. The approvers are every tenant's
of tenants.yaml, each for its own tenant's models (FACILFLOW_APPROVERS in its per-tenant
form), as `make dev` serves every tenant's location. It then runs
`mlflow server --app-name facilflow-governance`, creates the demo users once the server
is healthy (a user that exists gets its kept password again), prints where the passwords
are, and serves until stopped.

Only requests through this server are checked. The local environment's Dagster jobs,
sensors and CLI write to the sqlite file directly, where nothing is enforced.
"""

import configparser
import contextlib
import io
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import click
import requests

from facilflow_assets.tenants import TenantSpec, load_tenants

APP_NAME = "facilflow-governance"
ADMIN = "admin"
REQUESTER = "alice"
SERVICE_ACCOUNT = "facilflow"
AUTH_INI = "auth.ini"
AUTH_DB = "auth.db"
CREDENTIALS = "dev-credentials.ini"
STARTUP_TIMEOUT_S = 180
TENANTS = load_tenants()  # `make dev` serves every tenant's location


def tenant_approvers(tenants: dict[str, TenantSpec]) -> str:
    """Each tenant's approvers, in the per-tenant form of FACILFLOW_APPROVERS
    ("demo=carol,dave;acme=erin"): a tenant's approvers decide for its models only."""
    return ";".join(f"{name}={','.join(spec.approvers)}" for name, spec in tenants.items())


APPROVERS = tenant_approvers(TENANTS)


def _approvers() -> dict[str, list[str]]:
    """Every approver of any tenant, in the file's order, with the tenants they approve for."""
    found: dict[str, list[str]] = {}
    for tenant, spec in TENANTS.items():
        for name in spec.approvers:
            found.setdefault(name, []).append(tenant)
    return found


def demo_users() -> dict[str, str]:
    """The demo users, each with what it is for."""
    return {
        REQUESTER: "requests Production for a Staging version",
        **{
            name: f"a designated approver of the models of {', '.join(tenants)}"
            for name, tenants in _approvers().items()
        },
        SERVICE_ACCOUNT: "the service account, as the jobs run on a server: moves the "
        "production and staging aliases, sets stage tags",
    }


@dataclass(frozen=True)
class DevServerConfig:
    """What the server runs with: its files under `directory`, and the kept secrets."""

    directory: Path
    passwords: dict[str, str]  # the demo users' and the admin's
    secret_key: str

    @property
    def auth_ini(self) -> Path:
        return self.directory / AUTH_INI

    @property
    def auth_db(self) -> Path:
        return self.directory / AUTH_DB

    @property
    def credentials(self) -> Path:
        return self.directory / CREDENTIALS

    def server_env(self) -> dict[str, str]:
        """The variables the server process gets on top of the caller's environment."""
        return {
            "MLFLOW_AUTH_CONFIG_PATH": str(self.auth_ini),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": self.secret_key,
            "FACILFLOW_APPROVERS": APPROVERS,
            "MLFLOW_BASIC_AUTH_FAIL_CLOSED": "true",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }

    def server_command(self, host: str, port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            host,
            "--port",
            str(port),
            # One worker: the users' store is sqlite, and each worker of an app other than
            # MLflow's own `basic-auth` creates its tables at start, racing the others.
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{self.directory / 'mlflow.db'}",
            "--default-artifact-root",
            str(self.directory / "artifacts"),
            "--app-name",
            APP_NAME,
        ]


def write_config(directory: Path) -> DevServerConfig:
    """Write `auth.ini` and `dev-credentials.ini` under `directory` (mode 600), keeping the
    passwords and secret key already there and generating the missing ones."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    kept = _read_credentials(directory / CREDENTIALS)
    users = kept["users"] if kept.has_section("users") else {}
    passwords = {
        name: users.get(name) or secrets.token_urlsafe(18) for name in [*demo_users(), ADMIN]
    }
    secret_key = kept.get("server", "flask_secret_key", fallback="") or secrets.token_hex(32)
    config = DevServerConfig(directory, passwords, secret_key)
    if not users.get(ADMIN):
        # A users' store made with an admin password no longer kept cannot be signed in to;
        # it holds only the demo users, who are created again.
        config.auth_db.unlink(missing_ok=True)
    _write_private(config.credentials, _credentials_text(config))
    _write_private(config.auth_ini, _auth_ini_text(config))
    return config


def _read_credentials(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = _as_written  # user names as written
    parser.read(path)
    return parser


def _as_written(optionstr: str) -> str:
    return optionstr


def _credentials_text(config: DevServerConfig) -> str:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = _as_written
    parser["users"] = config.passwords
    parser["server"] = {"flask_secret_key": config.secret_key}
    roles = "\n".join(f"#   {name}: {role}" for name, role in demo_users().items())
    body = io.StringIO()
    parser.write(body)
    return (
        "# The users of the MLflow UI `make dev` serves (the facilflow-governance app over the\n"
        "# local store), generated once by facilflow_assets/dev_server.py and kept until\n"
        "# `make clean`. Sign in to the UI as one of them, or give MLflow's client\n"
        "# MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD.\n"
        f"{roles}\n#   {ADMIN}: MLflow's admin (manages users and permissions)\n\n{body.getvalue()}"
    )


def _auth_ini_text(config: DevServerConfig) -> str:
    return (
        "# MLflow's basic-auth settings for the MLflow UI of `make dev`, written at every start\n"
        f"# by facilflow_assets/dev_server.py from {CREDENTIALS}.\n"
        "[mlflow]\n"
        "default_permission = EDIT\n"
        f"database_uri = sqlite:///{config.auth_db}\n"
        f"admin_username = {ADMIN}\n"
        f"admin_password = {config.passwords[ADMIN]}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "# A password check costs tens of milliseconds by design; a credential that passed is\n"
        "# trusted for a minute.\n"
        "auth_cache_ttl_seconds = 60\n"
        "\n"
        "# The MLflow users FacilFlow's jobs and sensors run as: only they move the\n"
        "# production and staging aliases and write stage tags and audit records.\n"
        "[facilflow]\n"
        f"service_accounts = {SERVICE_ACCOUNT}\n"
    )


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 600, through a temporary file renamed over it."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as file:  # mkstemp made it 600
            file.write(text)
        os.chmod(tmp_name, 0o600)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def create_users(url: str, config: DevServerConfig) -> None:
    """Create the demo users on the server at `url`, as its admin, through MLflow's
    basic-auth REST API; a user that exists gets its kept password again, so the
    credentials file stays right."""
    api = f"{url}/api/2.0/mlflow/users"
    with requests.Session() as admin:
        admin.auth = (ADMIN, config.passwords[ADMIN])
        for name in demo_users():
            found = admin.get(f"{api}/get", params={"username": name}, timeout=30)
            if found.status_code == 404:
                made = admin.post(
                    f"{api}/create",
                    json={"username": name, "password": config.passwords[name]},
                    timeout=30,
                )
            elif found.ok:
                made = admin.patch(
                    f"{api}/update-password",
                    json={"username": name, "password": config.passwords[name]},
                    timeout=30,
                )
            else:
                made = found
            if not made.ok:
                raise click.ClickException(f"setting up the user {name} failed: {made.text}")
    with contextlib.suppress(FileNotFoundError):
        os.chmod(config.auth_db, 0o600)  # password hashes


def wait_until_healthy(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise click.ClickException(f"mlflow server exited with code {process.returncode}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/health", timeout=2).ok:
                return
        time.sleep(0.5)
    raise click.ClickException(f"mlflow server not healthy at {url} after {STARTUP_TIMEOUT_S} s")


def usage(url: str, config: DevServerConfig) -> str:
    width = max(len(name) for name in demo_users())
    users = "\n".join(f"  {name:<{width}}  {role}" for name, role in demo_users().items())
    return (
        f"\nMLflow UI: {url}, with the {APP_NAME} app (approvals enforced; approvers "
        f"{APPROVERS}).\n"
        f"Demo users; their passwords are in {config.credentials}:\n{users}\n"
        "Sign in to the UI as one of them, or use one from MLflow's client or REST API:\n"
        f"  MLFLOW_TRACKING_URI={url} MLFLOW_TRACKING_USERNAME={REQUESTER} "
        f"MLFLOW_TRACKING_PASSWORD=<{REQUESTER}'s password> .venv/bin/python ...\n"
        f"  curl -u {REQUESTER}:<{REQUESTER}'s password> {url}/api/2.0/mlflow/users/current\n"
        "The local Dagster jobs, sensors and `facilflow` CLI use the sqlite store directly, "
        "where nothing is enforced.\n"
    )


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def main(directory: Path, host: str, port: int) -> None:
    """Serve the local MLflow store in DIRECTORY with the governance app and demo users."""
    config = write_config(directory)
    (config.directory / "artifacts").mkdir(exist_ok=True)
    # The admin is bootstrapped from auth.ini only: a shell's MLFLOW_AUTH_ADMIN_* would win.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_AUTH_ADMIN_")}
    # In this process's group, so stopping the group stops the server and its workers.
    process = subprocess.Popen(
        config.server_command(host, port), env={**inherited, **config.server_env()}
    )
    url = f"http://{host}:{port}"
    try:
        wait_until_healthy(url, process)
        create_users(url, config)
    except BaseException:
        process.terminate()
        process.wait()
        raise
    click.echo(usage(url, config))
    sys.exit(process.wait())


if __name__ == "__main__":
    main()
