"""The promotion job: an approved request carried out, with this run as the audit's anchor."""

import dagster as dg
from pydantic import Field

from facilflow_assets.governance.audit import AuditTrail
from facilflow_assets.governance.integrity import GovernanceViolation
from facilflow_assets.governance.lifecycle_events import promotion_event, violation_event
from facilflow_assets.governance.review import PromotionOrder, promote
from resources import EventsResource, GovernanceResource, MlflowResource, TenantResource


class PromotionConfig(dg.Config):
    model: str = Field(description="Registered model name.")
    version: str
    source_run: str = ""
    requested_by: str
    approved_by: str
    decided_at: str
    comment: str = ""


@dg.op(description="Move the approved version to Production, archiving the one it replaces.")
def promote_approved_version(
    context: dg.OpExecutionContext,
    config: PromotionConfig,
    mlflow: MlflowResource,
    tenant: TenantResource,
    governance: GovernanceResource,
    events: EventsResource,
) -> None:
    client = mlflow.client()
    order = PromotionOrder(**config.model_dump())
    try:
        displaced = promote(
            client,
            AuditTrail(client, tenant.audit_experiment_name),
            order,
            governance.approvers_of(order.model),
            context.run_id,
        )
    except GovernanceViolation as violation:
        events.record([violation_event(tenant, "promotion_job", str(violation), order.version)])
        raise
    events.record([promotion_event(tenant, order, displaced, context.run_id)])
    context.log.info(f"{order.model} version {order.version} is in Production")


@dg.job(description="Carry out an approved transition to Production (launched by approval_sensor).")
def promotion_job() -> None:
    promote_approved_version()
