"""The one place that decides which environment FacilFlow runs in.

`local` (the default) runs on embedded stores under `.facilflow/` and needs no server.
`prod` takes every setting from environment variables through `dagster.EnvVar`, so no
secret is read at import time. Beside `resource_map.py`, which hands resources their
`dg.EnvVar` settings, no other module reads FacilFlow's own settings from the process
environment.
"""

import configparser
import getpass
import os
from enum import StrEnum
from pathlib import Path

from facilflow_assets.approvers import every_name

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The local working directory; FACILFLOW_HOME moves it (dbt's profile reads the same).
LOCAL_HOME = Path(os.environ.get("FACILFLOW_HOME") or PROJECT_ROOT / ".facilflow").resolve()
ENVIRONMENT_VARIABLE = "FACILFLOW_ENV"


class Environment(StrEnum):
    LOCAL = "local"
    PROD = "prod"


def get_environment() -> Environment:
    """The environment named by FACILFLOW_ENV; `local` when it is unset."""
    value = os.environ.get(ENVIRONMENT_VARIABLE, Environment.LOCAL.value).strip().lower()
    try:
        return Environment(value)
    except ValueError:
        allowed = ", ".join(e.value for e in Environment)
        raise ValueError(
            f"{ENVIRONMENT_VARIABLE}={value!r} is not an environment FacilFlow knows; "
            f"use one of: {allowed}"
        ) from None


def acting_user() -> str:
    """Who acts on the registry: the MLflow user when the server has authentication, else
    FACILFLOW_USER, else the operating-system user."""
    return (
        os.environ.get("MLFLOW_TRACKING_USERNAME")
        or os.environ.get("FACILFLOW_USER")
        or getpass.getuser()
    )


def server_governance_settings() -> dict[str, str]:
    """The governance server app's settings, as given: from the `[facilflow]` section of
    MLFLOW_AUTH_CONFIG_PATH its service accounts, each tenant's users and the model readers,
    and the approvers (FACILFLOW_APPROVERS)."""
    path = os.environ.get("MLFLOW_AUTH_CONFIG_PATH", "")
    config = configparser.ConfigParser(inline_comment_prefixes=("#",))
    if not path or not config.read(path):
        raise ValueError(f"MLFLOW_AUTH_CONFIG_PATH={path!r}: the governance app needs its file")
    accounts = config.get("facilflow", "service_accounts", fallback="")
    if not every_name(accounts):
        raise ValueError(
            f"{path}: set service_accounts in its [facilflow] section, the MLflow users the "
            "promotion, evaluation and registry jobs run as"
        )
    return {
        "service_accounts": accounts,
        "approvers": os.environ.get("FACILFLOW_APPROVERS", ""),
        "tenant_users": config.get("facilflow", "tenant_users", fallback=""),
        "model_readers": config.get("facilflow", "model_readers", fallback=""),
    }


def local_bootstrap_servers() -> str:
    """A Kafka cluster for the local environment's events (KAFKA_BOOTSTRAP_SERVERS), if any."""
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()


def local_serve_port() -> int:
    """The port of the local endpoint's HTTP proxy: FACILFLOW_SERVE_PORT, else 8000."""
    return int(os.environ.get("FACILFLOW_SERVE_PORT") or 8000)


def steps_in_own_pods() -> bool:
    """Whether the jobs that fan out run each step in a Kubernetes pod of its own
    (FACILFLOW_STEP_EXECUTOR=k8s, set in deploy/); otherwise steps run in the run's process."""
    value = os.environ.get("FACILFLOW_STEP_EXECUTOR", "").strip().lower()
    if value not in ("", "k8s"):
        raise ValueError(f"FACILFLOW_STEP_EXECUTOR={value!r}: use 'k8s' or leave it unset")
    return value == "k8s"
