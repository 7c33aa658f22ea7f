"""redeploy_sensor: the endpoint follows the Production alias, whoever moved it."""

import dagster as dg

from facilflow_assets.serving.models import PRODUCTION, ModelLoadError, resolve
from jobs import deployment_job
from resources import MlflowResource, TenantResource


@dg.sensor(
    job=deployment_job,
    minimum_interval_seconds=30,
    description="Redeploys the endpoint when the Production version changes: a promotion, a "
    "rollback, or an alias moved in the MLflow UI.",
)
def redeploy_sensor(
    context: dg.SensorEvaluationContext, mlflow: MlflowResource, tenant: TenantResource
):
    name = tenant.registered_model_name
    try:
        version = resolve(mlflow.client(), name, PRODUCTION).version
    except ModelLoadError:
        return dg.SkipReason(f"{name} has no Production version")
    previous = context.cursor or "none"
    if version == previous:
        return dg.SkipReason(f"{name} version {version} is the deployed Production version")
    return dg.SensorResult(
        # One deployment per change of the alias, from one version to another.
        run_requests=[
            dg.RunRequest(
                run_key=f"deploy:{name}:v{version}:after:{previous}",
                tags={"facilflow/model": name, "facilflow/version": version},
            )
        ],
        cursor=version,
    )
