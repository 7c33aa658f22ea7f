"""Acting on decisions: refusals and rejections are closed here, approvals become promotions.

Only decisions the audit trail confirms are carried out: an approval whose request or
decision has no record, or whose files are not the ones approved, is refused as a
governance violation.
"""

from dataclasses import dataclass

from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from facilflow_assets.governance.audit import AuditRecord, AuditTrail
from facilflow_assets.governance.digest import DIGEST_TAG
from facilflow_assets.governance.integrity import GovernanceViolation, unconfirmed_decision
from facilflow_assets.governance.requests import (
    DECISION_REASON,
    REQUEST_STATUS,
    Decision,
    RequestStatus,
    TransitionRequest,
    pending_requests,
    read_request,
    readiness_problem,
    refusal_reason,
    require_request,
)
from facilflow_assets.governance.stages import Stage
from facilflow_assets.governance.transitions import (
    SYSTEM_ACTOR,
    GovernanceError,
    stage_of,
    transition,
)

PROMOTION_RUN_TAG = "facilflow.promotion.dagster_run_id"


@dataclass(frozen=True)
class PromotionOrder:
    model: str
    version: str
    source_run: str
    requested_by: str
    approved_by: str
    decided_at: str
    comment: str

    @property
    def run_key(self) -> str:
        """One promotion per decision, however often a tick sees it."""
        return f"promote:{self.model}:v{self.version}:{self.decided_at}"


@dataclass(frozen=True)
class Closing:
    """A request to end without a transition: rejected, or refused with a reason."""

    version: ModelVersion
    request: TransitionRequest | None  # None when its tags could not be read
    status: RequestStatus
    actor: str
    reason: str = ""
    violation: bool = False  # its tags say what the audit trail does not


@dataclass(frozen=True)
class Review:
    requests: list[TransitionRequest]  # every readable pending request
    orders: list[PromotionOrder]  # approved and checked: to promote
    waiting: list[TransitionRequest]  # no decision yet
    closings: list[Closing]  # rejected or refused: to close


def review_decisions(
    client: MlflowClient, name: str, approvers: list[str], records: list[AuditRecord]
) -> Review:
    """What to do with each pending request of `name`, given its audit `records`; reads
    only, so a caller can record what will happen (its events) before `close_all` and the
    promotions change anything."""
    review = Review([], [], [], [])
    for version in pending_requests(client, name):
        try:  # tagged pending, so a version without a request is malformed like the others
            request = require_request(version)
        except GovernanceError as error:
            review.closings.append(
                Closing(version, None, RequestStatus.REFUSED, SYSTEM_ACTOR, str(error))
            )
            continue
        review.requests.append(request)
        if request.decision is None:
            review.waiting.append(request)
            continue
        if request.decision == Decision.REJECTED:
            review.closings.append(
                Closing(version, request, RequestStatus.REJECTED, request.decided_by)
            )
            continue
        reason, violation = promotion_refusal(client, version, request, approvers, records)
        if reason:
            review.closings.append(
                Closing(
                    version,
                    request,
                    RequestStatus.REFUSED,
                    request.decided_by,
                    reason,
                    violation=violation,
                )
            )
            continue
        review.orders.append(
            PromotionOrder(
                model=name,
                version=request.version,
                source_run=version.run_id or "",
                requested_by=request.requested_by,
                approved_by=request.decided_by,
                decided_at=request.decided_at,
                comment=request.decision_comment,
            )
        )
    return review


def close_all(client: MlflowClient, audit: AuditTrail, closings: list[Closing]) -> None:
    for closing in closings:
        close(client, audit, closing.version, closing.status, closing.actor, closing.reason)


def promotion_refusal(
    client: MlflowClient,
    version: ModelVersion,
    request: TransitionRequest,
    approvers: list[str],
    records: list[AuditRecord],
) -> tuple[str, bool]:
    """Why the approved request may not be carried out ('' when it may), and whether that
    is because the audit trail does not confirm its tags (a governance violation)."""
    refusal = refusal_reason(request, request.decided_by, approvers) or readiness_problem(
        client, version, records
    )
    if refusal:
        return refusal, False
    violation = unconfirmed_decision(records, request, version.tags.get(DIGEST_TAG, ""))
    return violation, bool(violation)


def close(
    client: MlflowClient,
    audit: AuditTrail,
    version: ModelVersion,
    status: RequestStatus,
    actor: str,
    reason: str = "",
) -> None:
    """End a request without a transition; a refusal is recorded with why (a rejection was
    recorded when it was made)."""
    name, number = version.name, str(version.version)
    if reason:
        client.set_model_version_tag(name, number, DECISION_REASON, reason)
    client.set_model_version_tag(name, number, REQUEST_STATUS, status.value)
    if status == RequestStatus.REFUSED:
        audit.record(name, number, "refusal", actor or SYSTEM_ACTOR, reason=reason)


def promote(
    client: MlflowClient,
    audit: AuditTrail,
    order: PromotionOrder,
    approvers: list[str],
    dagster_run_id: str,
) -> str | None:
    """Carry out an approved request: checked again, audited, and moved to Production.
    Returns the version it displaced from Production, if any."""
    version = client.get_model_version(order.model, order.version)
    request = read_request(version)
    if request is None or request.status != RequestStatus.PENDING:
        raise GovernanceError(
            f"{order.model} version {order.version} has no pending request to carry out"
        )
    records = audit.history(order.model)
    reason, violation = promotion_refusal(client, version, request, approvers, records)
    if reason:
        close(client, audit, version, RequestStatus.REFUSED, order.approved_by, reason)
        refused = f"promotion of {order.model} version {order.version} refused: {reason}"
        raise GovernanceViolation(refused) if violation else GovernanceError(refused)
    displaced = transition(
        client,
        audit,
        order.model,
        order.version,
        Stage.PRODUCTION,
        order.approved_by,
        order.comment or f"approved by {order.approved_by}",
        action="rollback" if stage_of(version) == Stage.ARCHIVED else "transition",
        dagster_run_id=dagster_run_id,
    )
    client.set_model_version_tag(order.model, order.version, PROMOTION_RUN_TAG, dagster_run_id)
    client.set_model_version_tag(
        order.model, order.version, REQUEST_STATUS, RequestStatus.PROMOTED.value
    )
    return displaced
