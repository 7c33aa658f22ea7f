"""approval_sensor: decisions on transition requests, found by their MLflow tags."""

import json

import dagster as dg

from facilflow_assets.governance.audit import AuditTrail
from facilflow_assets.governance.lifecycle_events import review_events, violation_event
from facilflow_assets.governance.review import close_all, review_decisions
from facilflow_assets.registry.assets import failed_audit_check
from facilflow_assets.scope import ModelScope
from jobs.promotion import promotion_op_name
from resources import EventsResource, GovernanceResource, MlflowResource


def build_approval_sensor(
    scope: ModelScope, promotion_job: dg.JobDefinition
) -> dg.SensorDefinition:
    @dg.sensor(
        name=scope.definition_name("approval_sensor"),
        job=promotion_job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Closes rejected and refused requests; launches one promotion per approval "
        "that the audit trail confirms, and reports the others as governance violations.",
    )
    def approval_sensor(
        context: dg.SensorEvaluationContext,
        mlflow: MlflowResource,
        governance: GovernanceResource,
        events: EventsResource,
    ) -> dg.SensorResult:
        return review_approvals(context, scope, mlflow, governance, events)

    return approval_sensor


def review_approvals(
    context: dg.SensorEvaluationContext,
    scope: ModelScope,
    mlflow: MlflowResource,
    governance: GovernanceResource,
    events: EventsResource,
) -> dg.SensorResult:
    client = mlflow.client()
    name = scope.registered_model_name
    approvers = governance.approvers_of(name)
    audit = AuditTrail(client, scope.audit_experiment_name)
    review = review_decisions(client, name, approvers, audit.history(name))
    violations = [closing for closing in review.closings if closing.violation]
    # Events first: a tick that fails after this point is repeated, and records nothing twice.
    events.record(
        review_events(scope, review, approvers)
        + [
            violation_event(scope, "approval_sensor", v.reason, str(v.version.version))
            for v in violations
        ]
    )
    close_all(client, audit, review.closings)
    for request in review.waiting:  # the approvers' to-do list, in the sensor's log
        context.log.info(
            f"awaiting {', '.join(approvers)}: {request.model} version {request.version} "
            f"to {request.stage}, requested by {request.requested_by} at {request.requested_at}"
            f" ({request.comment or 'no comment'})"
        )
    orders = review.orders
    launched = set(json.loads(context.cursor)) if context.cursor else set()
    fresh = [order for order in orders if order.run_key not in launched]
    # The cursor spares a tick from re-sending launched orders; the run_key alone already
    # keeps Dagster from launching a second run if the cursor update was lost.
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=order.run_key,
                run_config={"ops": {promotion_op_name(scope): {"config": vars(order)}}},
                tags={
                    "facilflow/model": order.model,
                    "facilflow/version": order.version,
                    "facilflow/source_run": order.source_run,
                    "facilflow/approved_by": order.approved_by,
                },
            )
            for order in fresh
        ],
        cursor=json.dumps(sorted({order.run_key for order in orders})),
        asset_events=[failed_audit_check(scope, v.reason) for v in violations],
    )
