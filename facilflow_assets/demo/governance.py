"""The demo's governance path: request, a refused self-approval, approval, sensor, promotion."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

import dagster as dg

from facilflow_assets.demo.plan import DemoPlan
from facilflow_assets.governance.audit import AuditTrail
from facilflow_assets.governance.lifecycle_events import requested
from facilflow_assets.governance.listing import history_table
from facilflow_assets.governance.requests import Decision, decide, request_production
from facilflow_assets.governance.stages import STAGE_TAG
from facilflow_assets.governance.transitions import GovernanceError
from facilflow_assets.scope import ModelScope

if TYPE_CHECKING:
    from facilflow_assets.demo.run import Lifecycle


class Governance(TypedDict):
    """The staged version's way to Production, and the model's history."""

    version: str
    requested_by: str
    self_approval: str
    approved_by: str
    sensor_run_key: str | None
    promotion_run_id: str
    stage: str
    history: list[dict[str, object]]


def promote_with_approval(
    lifecycle: Lifecycle, scope: ModelScope, plan: DemoPlan, version: str
) -> Governance:
    """Walk `version` from Staging to Production through the approval workflow: the
    requester tries to approve her own request, the approver approves, the approval sensor
    ticks and its run request is launched."""
    resources = lifecycle.defs.resources
    if resources is None:
        raise ValueError(f"tenant {scope.tenant}'s definitions have no resources")
    needed = {key: resources[key] for key in ("mlflow", "governance", "events")}
    requester, approver = plan.requester, plan.approver
    with dg.build_resources(needed) as built:
        client = built.mlflow.client()
        name = scope.registered_model_name
        audit = AuditTrail(client, scope.audit_experiment_name)
        approvers = built.governance.approvers_of(name)
        made = request_production(
            client, audit, name, version, requester, "holdout metrics beat the baseline"
        )
        built.events.record([requested(scope, made, approvers)])
        try:
            decide(client, audit, name, version, requester, Decision.APPROVED, "lgtm", approvers)
            self_approval = "accepted"
        except GovernanceError as refusal:
            self_approval = f"refused: {refusal}"
        decide(
            client, audit, name, version, approver, Decision.APPROVED, "metrics reviewed", approvers
        )
    sensor = lifecycle.defs.resolve_sensor_def(scope.definition_name("approval_sensor"))
    with dg.build_sensor_context(instance=lifecycle.instance, resources=needed) as context:
        tick = sensor(context)
        if not isinstance(tick, dg.SensorResult):
            raise TypeError(f"{sensor.name} returned {tick!r}, not a SensorResult")
        [run_request] = tick.run_requests or []
    result = lifecycle.run(
        scope.definition_name("promotion_job"),
        run_config=run_request.run_config,
        tags=run_request.tags,
    )
    stage = client.get_model_version(name, version).tags[STAGE_TAG]
    return {
        "version": version,
        "requested_by": requester,
        "self_approval": self_approval,
        "approved_by": approver,
        "sensor_run_key": run_request.run_key,
        "promotion_run_id": result.run_id,
        "stage": stage,
        "history": history_table(audit.history(name)).to_dicts(),
    }
