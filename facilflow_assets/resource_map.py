"""The resources of each environment: embedded defaults locally, EnvVar settings in prod.

One map serves every location: the shared one uses storage and dbt, a tenant's location the
rest. Nothing in it is a use case's: assets name their use case's objects themselves. A
resource's class is imported only when that resource is built, so a command that needs one
(the CLI's `models list` needs MLflow) does not import them all (Feast, Ray, dbt).
"""

from collections.abc import Callable, Collection
from pathlib import Path

import dagster as dg

import resources
from facilflow_assets.environment import (
    LOCAL_HOME,
    Environment,
    local_bootstrap_servers,
    local_serve_port,
)
from facilflow_assets.tenants import DEFAULT_TENANT, tenant_spec

LOCAL_MLFLOW_UI = "http://127.0.0.1:5000"  # where `make dev` serves the local store


def build_resources(
    environment: Environment,
    home: Path | None = None,
    approvers: list[str] | None = None,
    keys: Collection[str] | None = None,
) -> dict[str, object]:
    """The resource map for `environment` (only `keys`, if given); `home` overrides the
    local working directory and `approvers` are the local approvers, the default tenant's
    unless given (prod reads FACILFLOW_APPROVERS)."""
    if environment is Environment.PROD:
        builders = _prod_builders()
    else:
        builders = _local_builders(home or LOCAL_HOME, approvers)
    unknown = sorted(set(keys or ()) - set(builders))
    if unknown:
        raise KeyError(f"no resource {', '.join(unknown)}; there are {', '.join(builders)}")
    return {key: build() for key, build in builders.items() if keys is None or key in keys}


def _prod_builders() -> dict[str, Callable[[], object]]:
    storage = resources.StorageResource(home=dg.EnvVar("FACILFLOW_HOME"))
    return {
        "storage": lambda: storage,
        "feast": lambda: resources.FeastResource(
            storage=storage,
            online_store="redis",
            redis_url=dg.EnvVar("FACILFLOW_REDIS_URL"),
            ray_address=dg.EnvVar("FACILFLOW_RAY_ADDRESS"),
        ),
        "mlflow": lambda: resources.MlflowResource(
            tracking_uri=dg.EnvVar("MLFLOW_TRACKING_URI"),
            artifact_root=dg.EnvVar("FACILFLOW_ARTIFACT_ROOT"),
        ),
        "governance": lambda: resources.GovernanceResource(
            approvers=dg.EnvVar("FACILFLOW_APPROVERS")
        ),
        "retraining": lambda: resources.RetrainingPolicyResource(
            on=dg.EnvVar("FACILFLOW_RETRAIN_ON_DRIFT")
        ),
        "serving": lambda: resources.ServingResource(
            ray_address=dg.EnvVar("FACILFLOW_SERVE_RAY_ADDRESS"),
            http_host=dg.EnvVar("FACILFLOW_SERVE_HOST"),
            http_port=dg.EnvVar.int("FACILFLOW_SERVE_PORT"),
            state_dir=dg.EnvVar("FACILFLOW_HOME"),
            request_log_dir=dg.EnvVar("FACILFLOW_REQUEST_LOG_DIR"),
        ),
        "events": lambda: resources.EventsResource(
            outbox_url=dg.EnvVar("FACILFLOW_OUTBOX_URL"),
            bootstrap_servers=dg.EnvVar("KAFKA_BOOTSTRAP_SERVERS"),
        ),
        "ray_cluster": lambda: resources.RayResource(
            address=dg.EnvVar("FACILFLOW_RAY_ADDRESS"),
            storage_path=dg.EnvVar("FACILFLOW_CHECKPOINT_ROOT"),
            s3_endpoint_url=dg.EnvVar("MLFLOW_S3_ENDPOINT_URL"),
        ),
        "dbt": lambda: _dbt(Environment.PROD),
    }


def _local_builders(home: Path, approvers: list[str] | None) -> dict[str, Callable[[], object]]:
    storage = resources.StorageResource(home=str(home))
    local_approvers = tenant_spec(DEFAULT_TENANT).approvers if approvers is None else approvers
    return {
        "storage": lambda: storage,
        "feast": lambda: resources.FeastResource(storage=storage),
        "mlflow": lambda: resources.MlflowResource(
            tracking_uri=f"sqlite:///{storage.mlflow_dir / 'mlflow.db'}",
            artifact_root=(storage.mlflow_dir / "artifacts").as_uri(),
            ui_url=LOCAL_MLFLOW_UI,
        ),
        "ray_cluster": lambda: resources.RayResource(storage_path=str(storage.root / "ray")),
        "governance": lambda: resources.GovernanceResource(approvers=",".join(local_approvers)),
        "retraining": lambda: resources.RetrainingPolicyResource(),
        "serving": lambda: resources.ServingResource(
            http_port=local_serve_port(),
            state_dir=str(storage.root / "serve"),
            request_log_dir=str(storage.root / "serving" / "requests"),
        ),
        "events": lambda: resources.EventsResource(
            outbox_url=f"sqlite:///{storage.root / 'events' / 'outbox.db'}",
            bootstrap_servers=local_bootstrap_servers(),
        ),
        "dbt": lambda: _dbt(Environment.LOCAL),
    }


def _dbt(environment: Environment):
    from dagster_dbt import DbtCliResource

    from facilflow_assets.warehouse.assets import DBT_EXECUTABLE, dbt_project

    return DbtCliResource(
        project_dir=dbt_project, target=environment.value, dbt_executable=DBT_EXECUTABLE
    )
