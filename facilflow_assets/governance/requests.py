"""The approval workflow as tags on a model version, so the MLflow UI can drive it.

A request to move a version to Production, and the decision on it, are these tags:

    facilflow.request.stage     Production
    facilflow.request.status    pending -> approved | rejected | refused | promoted
    facilflow.request.by / .at / .comment
    facilflow.decision          approved | rejected
    facilflow.decision.by / .at / .comment
    facilflow.decision.reason   why a decision was refused (set by FacilFlow)
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from facilflow_assets.governance.audit import AuditRecord, AuditTrail, server_records_decisions
from facilflow_assets.governance.digest import DIGEST_TAG
from facilflow_assets.governance.stages import Stage
from facilflow_assets.governance.transitions import GovernanceError, model_version, stage_of

REQUEST_STAGE = "facilflow.request.stage"
REQUEST_STATUS = "facilflow.request.status"
REQUEST_BY = "facilflow.request.by"
REQUEST_AT = "facilflow.request.at"
REQUEST_COMMENT = "facilflow.request.comment"
DECISION = "facilflow.decision"
DECISION_BY = "facilflow.decision.by"
DECISION_AT = "facilflow.decision.at"
DECISION_COMMENT = "facilflow.decision.comment"
DECISION_REASON = "facilflow.decision.reason"
EVALUATION_TAG = "facilflow.evaluation"  # on the version's source run: passed | failed


class RequestStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    REFUSED = "refused"
    PROMOTED = "promoted"


class Decision(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True)
class TransitionRequest:
    model: str
    version: str
    stage: Stage
    status: RequestStatus
    requested_by: str
    requested_at: str
    comment: str
    decision: Decision | None
    decided_by: str
    decided_at: str
    decision_comment: str


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def read_request(version: ModelVersion) -> TransitionRequest | None:
    """The version's request, or None; malformed tags raise GovernanceError naming them."""
    tags = version.tags
    if REQUEST_STAGE not in tags and DECISION not in tags:
        return None
    where = f"{version.name} version {version.version}"
    stage = _enum(Stage, tags.get(REQUEST_STAGE), REQUEST_STAGE, where)
    if stage != Stage.PRODUCTION:
        raise GovernanceError(f"{where}: {REQUEST_STAGE} must be Production, not '{stage}'")
    if not tags.get(REQUEST_BY):
        raise GovernanceError(f"{where}: a request needs {REQUEST_BY}, the requesting user")
    decision = tags.get(DECISION)
    return TransitionRequest(
        model=version.name,
        version=str(version.version),
        stage=stage,
        status=_enum(RequestStatus, tags.get(REQUEST_STATUS, "pending"), REQUEST_STATUS, where),
        requested_by=tags[REQUEST_BY],
        requested_at=tags.get(REQUEST_AT, ""),
        comment=tags.get(REQUEST_COMMENT, ""),
        decision=_enum(Decision, decision, DECISION, where) if decision else None,
        decided_by=tags.get(DECISION_BY, ""),
        decided_at=tags.get(DECISION_AT, ""),
        decision_comment=tags.get(DECISION_COMMENT, ""),
    )


def require_request(version: ModelVersion) -> TransitionRequest:
    """The version's request; GovernanceError if its tags hold none."""
    request = read_request(version)
    if request is None:
        raise GovernanceError(
            f"{version.name} version {version.version}: no request ({REQUEST_STAGE} unset)"
        )
    return request


def _enum(kind, value, tag: str, where: str):
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(v.value for v in kind)
        raise GovernanceError(f"{where}: tag {tag}='{value}' is not one of {allowed}") from None


def request_production(
    client: MlflowClient, audit: AuditTrail, name: str, version: str, actor: str, comment: str
) -> TransitionRequest:
    """Ask for `version` to move to Production: from Staging, or back from Archived when it
    held Production before (a rollback). Returns the request made."""
    current = model_version(client, name, version)
    existing = read_request(current)
    if existing is not None and existing.status == RequestStatus.PENDING:
        raise GovernanceError(
            f"{name} version {version} already has a pending request by {existing.requested_by}"
        )
    problem = request_eligibility(current, audit.history(name))
    if problem:
        raise GovernanceError(f"{name} version {version}: {problem}")
    on_client = not server_records_decisions(client)
    if on_client:  # a governed server clears a closed request's decision itself
        for tag in (DECISION, DECISION_BY, DECISION_AT, DECISION_COMMENT, DECISION_REASON):
            if tag in current.tags:
                client.delete_model_version_tag(name, version, tag)
    _set_tags_or_none(
        client,
        name,
        version,
        # The requester first (a governed server checks it), the status last (it makes the
        # request: a governed server stamps its time and records it then).
        {
            REQUEST_BY: actor,
            REQUEST_STAGE: Stage.PRODUCTION.value,
            REQUEST_AT: now(),
            REQUEST_COMMENT: comment,
            REQUEST_STATUS: RequestStatus.PENDING.value,
        },
    )
    made = require_request(client.get_model_version(name, version))
    if on_client:
        record_request(audit, current, actor, comment, made.requested_at)
    return made


def record_request(
    audit: AuditTrail, version: ModelVersion, actor: str, comment: str, requested_at: str
) -> None:
    """The audit record of a request, as the sensors match it against the request's tags."""
    audit.record(
        version.name,
        str(version.version),
        "request",
        actor,
        from_stage=stage_of(version),
        to_stage=Stage.PRODUCTION,
        comment=comment,
        stamp=requested_at,
        digest=version.tags.get(DIGEST_TAG, ""),
    )


def record_decision(
    audit: AuditTrail,
    version: ModelVersion,
    actor: str,
    decision: Decision,
    comment: str,
    decided_at: str,
) -> None:
    """The audit record of a decision, bound to the digest of the files decided on."""
    audit.record(
        version.name,
        str(version.version),
        decision_action(decision),
        actor,
        comment=comment,
        stamp=decided_at,
        digest=version.tags.get(DIGEST_TAG, ""),
    )


def request_eligibility(version: ModelVersion, records: list[AuditRecord]) -> str:
    """Why `version` cannot be requested for Production, or '' when it can: it is in
    Staging with its files' digest recorded, or Archived after holding Production with the
    same files (a rollback)."""
    stage, digest = stage_of(version), version.tags.get(DIGEST_TAG, "")
    if not digest:
        return "no digest of its files is recorded; only an evaluated version can be requested"
    if stage == Stage.STAGING:
        return ""
    if stage == Stage.ARCHIVED:
        held = [
            r
            for r in records
            if r.version == str(version.version)
            and r.changed_stage
            and r.to_stage == Stage.PRODUCTION
        ]
        if held and held[-1].digest == digest:
            return ""
        return "it never held Production with these files, so it is no rollback target"
    return f"it is in {stage}; only a Staging version, or a former Production one, can be requested"


def decide(
    client: MlflowClient,
    audit: AuditTrail,
    name: str,
    version: str,
    actor: str,
    decision: Decision,
    comment: str,
    approvers: list[str],
) -> None:
    """Record an approver's decision on the pending request as tags (and, without a governed
    server, in the audit trail). The approval sensor acts on it once the trail confirms it,
    as it does for decisions made in the MLflow UI."""
    current = model_version(client, name, version)
    request = read_request(current)
    if request is None or request.status != RequestStatus.PENDING:
        state = "no request" if request is None else f"a request already {request.status}"
        raise GovernanceError(f"{name} version {version} has {state}; nothing to decide")
    if request.decision is not None:
        raise GovernanceError(
            f"{name} version {version}: the request was already {request.decision} by "
            f"{request.decided_by}"
        )
    reason = refusal_reason(request, actor, approvers) or readiness_problem(
        client, current, audit.history(name)
    )
    if reason:
        raise GovernanceError(f"{name} version {version}: {reason}")
    _set_tags_or_none(
        client,
        name,
        version,
        {DECISION_BY: actor, DECISION_AT: now(), DECISION_COMMENT: comment, DECISION: decision},
    )
    if not server_records_decisions(client):
        decided = require_request(client.get_model_version(name, version))
        record_decision(audit, current, actor, decision, comment, decided.decided_at)


def _set_tags_or_none(client: MlflowClient, name: str, version: str, tags: dict) -> None:
    """Set `tags` in order; if one is refused, remove those already set and re-raise."""
    done = []
    try:
        for tag, value in tags.items():
            client.set_model_version_tag(name, version, tag, str(value))
            done.append(tag)
    except Exception:
        for tag in done:
            client.delete_model_version_tag(name, version, tag)
        raise


def decision_action(decision: Decision) -> str:
    return "approval" if decision == Decision.APPROVED else "rejection"


def refusal_reason(request: TransitionRequest, approver: str, approvers: list[str]) -> str:
    """Why `approver` may not decide `request`, or '' when they may."""
    if not approver:
        return f"the decision names no approver ({DECISION_BY} is empty)"
    if approver not in approvers:
        return (
            f"{approver} is not a designated approver of {request.model} "
            f"(approvers: {', '.join(approvers) or 'none'})"
        )
    if approver == request.requested_by:
        return f"{approver} requested this transition and cannot approve it too"
    return ""


def readiness_problem(
    client: MlflowClient, version: ModelVersion, records: list[AuditRecord]
) -> str:
    """Why `version` cannot go to Production now, or '' when it can."""
    problem = request_eligibility(version, records)
    if problem:
        return problem
    run_id = version.run_id
    evaluation = client.get_run(run_id).data.tags.get(EVALUATION_TAG) if run_id else None
    if evaluation != "passed":
        return (
            f"version {version.version}'s evaluation did not pass ({evaluation or 'none recorded'})"
        )
    return ""


def pending_requests(client: MlflowClient, name: str) -> list[ModelVersion]:
    """Versions of `name` with a pending request, found through a tag filter."""
    return client.search_model_versions(
        f"name = '{name}' and tags.`{REQUEST_STATUS}` = '{RequestStatus.PENDING}'"
    )
