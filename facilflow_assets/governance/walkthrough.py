"""The demo's governance path: request, a refused self-approval, approval, sensor, promotion."""

import dagster as dg

from facilflow_assets.governance.audit import AuditTrail
from facilflow_assets.governance.lifecycle_events import requested
from facilflow_assets.governance.listing import history_table
from facilflow_assets.governance.requests import Decision, decide, request_production
from facilflow_assets.governance.transitions import GovernanceError
from facilflow_assets.registry.stages import STAGE_TAG
from jobs.promotion import promotion_job
from sensors.approval import approval_sensor

REQUESTER = "carol"  # a designated approver, so approving her own request is the refusal shown
APPROVER = "dave"
RESOURCE_KEYS = ("mlflow", "tenant", "governance", "events")


def promote_with_approval(
    resources: dict[str, object], instance: dg.DagsterInstance, version: str
) -> dict[str, object]:
    """Walk `version` from Staging to Production through the approval workflow."""
    needed = {key: resources[key] for key in RESOURCE_KEYS}
    with dg.build_resources(needed) as built:
        client = built.mlflow.client()
        name = built.tenant.registered_model_name
        audit = AuditTrail(client, built.tenant.audit_experiment_name)
        approvers = built.governance.approvers_of(name)
        made = request_production(
            client, audit, name, version, REQUESTER, "holdout AUC beats baseline"
        )
        built.events.record([requested(built.tenant, made, approvers)])
        try:
            decide(client, audit, name, version, REQUESTER, Decision.APPROVED, "lgtm", approvers)
            self_approval = "accepted"
        except GovernanceError as refusal:
            self_approval = f"refused: {refusal}"
        decide(
            client, audit, name, version, APPROVER, Decision.APPROVED, "metrics reviewed", approvers
        )
    with dg.build_sensor_context(instance=instance, resources=needed) as context:
        [run_request] = approval_sensor(context).run_requests
    result = promotion_job.execute_in_process(
        run_config=run_request.run_config,
        resources=needed,
        instance=instance,
        tags=run_request.tags,
    )
    stage = client.get_model_version(name, version).tags[STAGE_TAG]
    return {
        "version": version,
        "requested_by": REQUESTER,
        "self_approval": self_approval,
        "approved_by": APPROVER,
        "sensor_run_key": run_request.run_key,
        "promotion_run_id": result.run_id,
        "stage": stage,
        "history": history_table(audit.history(name)).to_dicts(),
    }
