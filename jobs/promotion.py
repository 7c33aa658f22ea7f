"""The promotion job: an approved request carried out, with this run as the audit's anchor."""

import dagster as dg
from pydantic import Field

from facilflow_assets.governance.audit import AuditTrail
from facilflow_assets.governance.integrity import GovernanceViolation
from facilflow_assets.governance.lifecycle_events import promotion_event, violation_event
from facilflow_assets.governance.review import PromotionOrder, promote
from facilflow_assets.scope import ModelScope
from resources import EventsResource, GovernanceResource, MlflowResource


class PromotionConfig(dg.Config):
    model: str = Field(description="Registered model name.")
    version: str
    source_run: str = ""
    requested_by: str
    approved_by: str
    decided_at: str
    comment: str = ""


class PromotionRefused(ValueError):
    """An order for a model outside the job's use case."""


def promotion_op_name(scope: ModelScope) -> str:
    """Where the approval sensor puts an order in the promotion job's run config."""
    return scope.definition_name("promote_approved_version")


def build_promotion_job(scope: ModelScope) -> dg.JobDefinition:
    """The use case's promotion job: one op carrying out an approved order."""

    @dg.op(
        name=promotion_op_name(scope),
        description="Move the approved version to Production, archiving the one it replaces.",
    )
    def promote_approved_version(
        context: dg.OpExecutionContext,
        config: PromotionConfig,
        mlflow: MlflowResource,
        governance: GovernanceResource,
        events: EventsResource,
    ) -> None:
        carry_out(context, PromotionOrder(**config.model_dump()), scope, mlflow, governance, events)

    @dg.job(
        name=scope.definition_name("promotion_job"),
        tags=scope.run_tags,
        description="Carry out an approved transition to Production (launched by the approval "
        "sensor).",
    )
    def promotion_job() -> None:
        promote_approved_version()

    return promotion_job


def carry_out(
    context: dg.OpExecutionContext,
    order: PromotionOrder,
    scope: ModelScope,
    mlflow: MlflowResource,
    governance: GovernanceResource,
    events: EventsResource,
) -> None:
    if order.model != scope.registered_model_name:
        raise PromotionRefused(
            f"this job promotes {scope.registered_model_name} versions, not {order.model}'s"
        )
    client = mlflow.client()
    try:
        displaced = promote(
            client,
            AuditTrail(client, scope.audit_experiment_name),
            order,
            governance.approvers_of(order.model),
            context.run.run_id,
        )
    except GovernanceViolation as violation:
        events.record([violation_event(scope, "promotion_job", str(violation), order.version)])
        raise
    events.record([promotion_event(scope, order, displaced, context.run.run_id)])
    context.log.info(f"{order.model} version {order.version} is in Production")
