"""The resources of each environment: embedded defaults locally, EnvVar settings in prod.

One map serves every location: the shared one uses storage and dbt, a tenant's location the
rest. Nothing in it is a use case's: assets name their use case's objects themselves.
"""

from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource

from facilflow_assets.environment import (
    LOCAL_HOME,
    Environment,
    local_bootstrap_servers,
    local_serve_port,
)
from facilflow_assets.tenants import DEFAULT_TENANT, tenant_spec
from facilflow_assets.warehouse import DBT_EXECUTABLE, dbt_project
from resources import (
    EventsResource,
    FeastResource,
    GovernanceResource,
    MlflowResource,
    RayResource,
    RetrainingPolicyResource,
    ServingResource,
    StorageResource,
)

LOCAL_MLFLOW_UI = "http://127.0.0.1:5000"  # where `make dev` serves the local store


def build_resources(
    environment: Environment, home: Path | None = None, approvers: list[str] | None = None
) -> dict[str, object]:
    """The resource map for `environment`; `home` overrides the local working directory and
    `approvers` are the local approvers, the default tenant's unless given (prod reads
    FACILFLOW_APPROVERS)."""
    if environment is Environment.PROD:
        storage = StorageResource(home=dg.EnvVar("FACILFLOW_HOME"))
        return {
            "storage": storage,
            "feast": FeastResource(
                storage=storage,
                online_store="redis",
                redis_url=dg.EnvVar("FACILFLOW_REDIS_URL"),
            ),
            "mlflow": MlflowResource(
                tracking_uri=dg.EnvVar("MLFLOW_TRACKING_URI"),
                artifact_root=dg.EnvVar("FACILFLOW_ARTIFACT_ROOT"),
            ),
            "governance": GovernanceResource(approvers=dg.EnvVar("FACILFLOW_APPROVERS")),
            "retraining": RetrainingPolicyResource(on=dg.EnvVar("FACILFLOW_RETRAIN_ON_DRIFT")),
            "serving": ServingResource(
                ray_address=dg.EnvVar("FACILFLOW_SERVE_RAY_ADDRESS"),
                http_host=dg.EnvVar("FACILFLOW_SERVE_HOST"),
                http_port=dg.EnvVar.int("FACILFLOW_SERVE_PORT"),
                state_dir=dg.EnvVar("FACILFLOW_HOME"),
                request_log_dir=dg.EnvVar("FACILFLOW_REQUEST_LOG_DIR"),
            ),
            "events": EventsResource(
                outbox_url=dg.EnvVar("FACILFLOW_OUTBOX_URL"),
                bootstrap_servers=dg.EnvVar("KAFKA_BOOTSTRAP_SERVERS"),
            ),
            "ray_cluster": RayResource(
                address=dg.EnvVar("FACILFLOW_RAY_ADDRESS"),
                storage_path=dg.EnvVar("FACILFLOW_CHECKPOINT_ROOT"),
                s3_endpoint_url=dg.EnvVar("MLFLOW_S3_ENDPOINT_URL"),
            ),
            "dbt": DbtCliResource(
                project_dir=dbt_project,
                target=Environment.PROD.value,
                dbt_executable=DBT_EXECUTABLE,
            ),
        }
    storage = StorageResource(home=str(home or LOCAL_HOME))
    return {
        "storage": storage,
        "feast": FeastResource(storage=storage),
        "mlflow": MlflowResource(
            tracking_uri=f"sqlite:///{storage.mlflow_dir / 'mlflow.db'}",
            artifact_root=(storage.mlflow_dir / "artifacts").as_uri(),
            ui_url=LOCAL_MLFLOW_UI,
        ),
        "ray_cluster": RayResource(storage_path=str(storage.root / "ray")),
        "governance": GovernanceResource(
            approvers=",".join(
                tenant_spec(DEFAULT_TENANT).approvers if approvers is None else approvers
            )
        ),
        "retraining": RetrainingPolicyResource(),
        "serving": ServingResource(
            http_port=local_serve_port(),
            state_dir=str(storage.root / "serve"),
            request_log_dir=str(storage.root / "serving" / "requests"),
        ),
        "events": EventsResource(
            outbox_url=f"sqlite:///{storage.root / 'events' / 'outbox.db'}",
            bootstrap_servers=local_bootstrap_servers(),
        ),
        "dbt": DbtCliResource(
            project_dir=dbt_project, target=Environment.LOCAL.value, dbt_executable=DBT_EXECUTABLE
        ),
    }
