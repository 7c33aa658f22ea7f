"""What the audit trail confirms: the sensors, the promotion job and the loaders act only on
tags and aliases that match its records, and report the rest as violations.

Tags and aliases are what people and the MLflow UI see; the audit trail is what only the
server side writes. A request or decision tag without its record, an alias that moved with
no record of the move, or files that are not the ones approved, is a governance violation:
reported, never acted upon.
"""

from facilflow_assets.governance.audit import AuditRecord
from facilflow_assets.governance.requests import Decision, TransitionRequest, decision_action
from facilflow_assets.governance.stages import Stage


class GovernanceViolation(RuntimeError):
    """Registry state that the audit trail does not confirm; nothing was acted upon."""


def unconfirmed_decision(
    records: list[AuditRecord], request: TransitionRequest, digest: str
) -> str:
    """Why the decided `request` is not what the audit trail recorded, or '' when it is."""
    where = f"{request.model} version {request.version}"
    if (
        _find(records, request.version, "request", request.requested_by, request.requested_at)
        is None
    ):
        return (
            f"{where}: no audit record of a request by {request.requested_by or 'nobody'} "
            f"at {request.requested_at or 'no time'}"
        )
    decision = request.decision or Decision.REJECTED
    record = _find(
        records, request.version, decision_action(decision), request.decided_by, request.decided_at
    )
    if record is None:
        return (
            f"{where}: no audit record of the {decision_action(decision)} by "
            f"{request.decided_by or 'nobody'} at {request.decided_at or 'no time'}"
        )
    if decision == Decision.APPROVED and (not record.digest or record.digest != digest):
        return (
            f"{where}: the files approved were {record.digest or 'not recorded'}, the "
            f"version's are {digest or 'not recorded'}"
        )
    return ""


def unconfirmed_holder(records: list[AuditRecord], stage: Stage, version: str, digest: str) -> str:
    """Why `version` holding `stage`'s alias is not what the audit trail recorded, or ''."""
    moved_in = [r for r in records if r.changed_stage and r.to_stage == stage]
    last = moved_in[-1] if moved_in else None
    if last is None or last.version != version:
        recorded = f"version {last.version}" if last else "no version"
        return (
            f"the {stage.alias} alias points at version {version}, but the audit trail's last "
            f"move to {stage} is {recorded}"
        )
    if not last.digest or last.digest != digest:
        return (
            f"version {version} holds {stage} with files {digest or 'not recorded'}, but "
            f"they were {last.digest or 'not recorded'} when it moved there"
        )
    return ""


def _find(
    records: list[AuditRecord], version: str, action: str, actor: str, stamp: str
) -> AuditRecord | None:
    if not actor or not stamp:
        return None
    for record in reversed(records):
        if (record.version, record.action, record.actor, record.stamp) == (
            version,
            action,
            actor,
            stamp,
        ):
            return record
    return None
