"""redeploy_sensor: the endpoint follows the Production alias, once the audit trail confirms
the move."""

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from facilflow_assets.governance.integrity import GovernanceViolation
from facilflow_assets.governance.lifecycle_events import violation_event
from facilflow_assets.registry.assets import failed_audit_check
from facilflow_assets.scope import ModelScope
from facilflow_assets.serving.models import PRODUCTION, ModelLoadError, confirmed
from resources import EventsResource, MlflowResource


def build_redeploy_sensor(
    scope: ModelScope, deployment_job: UnresolvedAssetJobDefinition
) -> dg.SensorDefinition:
    @dg.sensor(
        name=scope.definition_name("redeploy_sensor"),
        job=deployment_job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Redeploys the endpoint when the Production version changes by a promotion "
        "or a rollback the audit trail records; an alias moved any other way is reported, not "
        "deployed.",
    )
    def redeploy_sensor(
        context: dg.SensorEvaluationContext, mlflow: MlflowResource, events: EventsResource
    ):
        return follow_production(context, scope, mlflow, events)

    return redeploy_sensor


def follow_production(
    context: dg.SensorEvaluationContext,
    scope: ModelScope,
    mlflow: MlflowResource,
    events: EventsResource,
):
    name = scope.registered_model_name
    try:
        version = confirmed(mlflow.client(), name, PRODUCTION).version
    except ModelLoadError:
        return dg.SkipReason(f"{name} has no Production version")
    except GovernanceViolation as violation:
        events.record([violation_event(scope, "redeploy_sensor", str(violation))])
        return dg.SensorResult(
            skip_reason=f"not deployed: {violation}",
            asset_events=[failed_audit_check(scope, str(violation))],
        )
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
