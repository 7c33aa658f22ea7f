"""The lifecycle events of the approval workflow, derived from what a review found.

Each event's id is derived from the request or decision it reports (its time), so the
sensor can emit them on every tick that sees the request, and the CLI when it makes one,
and each still goes out once.
"""

from facilflow_assets.events.envelope import (
    EventType,
    GovernanceViolation,
    LifecycleEvent,
    Promoted,
    TransitionApproved,
    TransitionRejected,
    TransitionRequested,
)
from facilflow_assets.governance.requests import TransitionRequest
from facilflow_assets.governance.review import PromotionOrder, Review
from facilflow_assets.governance.stages import Stage
from facilflow_assets.scope import ModelScope


def requested(
    scope: ModelScope, request: TransitionRequest, approvers: list[str]
) -> LifecycleEvent:
    """The approvers' notification of a request."""
    payload = TransitionRequested(
        stage=request.stage.value,
        requested_by=request.requested_by,
        requested_at=request.requested_at,
        comment=request.comment,
        approvers=approvers,
    )
    return scope.event(
        EventType.MODEL_TRANSITION_REQUESTED,
        payload,
        version=request.version,
        once_per=request.requested_at,
    )


def review_events(scope: ModelScope, review: Review, approvers: list[str]) -> list[LifecycleEvent]:
    """Every request seen (its notification), every approval to carry out, every rejection
    and refusal to close."""
    events = [requested(scope, request, approvers) for request in review.requests]
    # A decision is reported once: its event id comes from the version and the decision time.
    decisions = [
        (
            EventType.MODEL_TRANSITION_APPROVED,
            TransitionApproved(
                stage=Stage.PRODUCTION.value,
                requested_by=order.requested_by,
                approved_by=order.approved_by,
                comment=order.comment,
            ),
            order.version,
            order.decided_at,
        )
        for order in review.orders
    ] + [
        (
            EventType.MODEL_TRANSITION_REJECTED,
            TransitionRejected(
                stage=closing.request.stage.value,
                requested_by=closing.request.requested_by,
                decided_by=closing.actor,
                comment=closing.request.decision_comment,
                reason=closing.reason,
            ),
            closing.request.version,
            closing.request.decided_at,
        )
        for closing in review.closings
        if closing.request is not None  # unreadable tags: refused and audited, no event
    ]
    for event_type, payload, version, decided_at in decisions:
        events.append(scope.event(event_type, payload, version=version, once_per=decided_at))
    return events


def promoted(
    scope: ModelScope,
    version: str,
    by: str,
    comment: str,
    previous_version: str | None,
    *,
    rollback: bool = False,
    dagster_run_id: str | None = None,
    once_per: str | None = None,
) -> LifecycleEvent:
    payload = Promoted(
        stage=Stage.PRODUCTION.value,
        by=by,
        comment=comment,
        previous_version=previous_version,
        rollback=rollback,
    )
    return scope.event(
        EventType.MODEL_PROMOTED,
        payload,
        version=version,
        dagster_run_id=dagster_run_id,
        once_per=once_per,
    )


def promotion_event(
    scope: ModelScope, order: PromotionOrder, displaced: str | None, dagster_run_id: str
) -> LifecycleEvent:
    """The promotion an approved order led to, once per decision."""
    return promoted(
        scope,
        order.version,
        order.approved_by,
        order.comment,
        displaced,
        dagster_run_id=dagster_run_id,
        once_per=order.decided_at,
    )


def violation_event(
    scope: ModelScope, check: str, problem: str, version: str | None = None
) -> LifecycleEvent:
    """MODEL_GOVERNANCE_VIOLATION: what `check` found unconfirmed, once per problem."""
    return scope.event(
        EventType.MODEL_GOVERNANCE_VIOLATION,
        GovernanceViolation(check=check, problem=problem),
        version=version,
        once_per=f"{check}:{problem}",
    )
