"""Stage transitions of a registered version, each with a comment and an audit record."""

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from facilflow_assets.governance.audit import AuditRecord, AuditTrail
from facilflow_assets.governance.digest import DIGEST_TAG
from facilflow_assets.governance.stages import (
    STAGE_TAG,
    Stage,
    move_to_stage,
    reconcile_stages,
    version_in_stage,
)

SYSTEM_ACTOR = "facilflow"  # the actor of what FacilFlow's own jobs decide


class GovernanceError(ValueError):
    """A request, decision or transition that cannot be done; nothing was changed."""


def model_version(client: MlflowClient, name: str, version: str) -> ModelVersion:
    """The version, or a GovernanceError naming the unknown model or version."""
    try:
        client.get_registered_model(name)
    except MlflowException:
        raise GovernanceError(f"there is no registered model '{name}'") from None
    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        raise GovernanceError(f"model '{name}' has no version {version}") from None


def stage_of(version: ModelVersion) -> Stage:
    return Stage(version.tags.get(STAGE_TAG, Stage.NONE.value))


def transition(
    client: MlflowClient,
    audit: AuditTrail,
    name: str,
    version: str,
    stage: Stage,
    actor: str,
    comment: str,
    action: str = "transition",
    dagster_run_id: str = "",
) -> str | None:
    """Move `version` to `stage`; the version it displaces is archived, both audited.
    Returns the displaced version, if any."""
    moving = model_version(client, name, version)
    current = stage_of(moving)
    if current == stage:
        raise GovernanceError(f"{name} version {version} is already in {stage}")
    displaced = move_to_stage(client, name, str(version), stage)
    archived = set(reconcile_stages(client, name))
    if displaced:
        archived.add(displaced)
    audit.record(
        name,
        str(version),
        action,
        actor,
        from_stage=current,
        to_stage=stage,
        comment=comment,
        dagster_run_id=dagster_run_id,
        digest=moving.tags.get(DIGEST_TAG, ""),
    )
    for other in sorted(archived - {str(version)}, key=int):
        audit.record(
            name,
            other,
            "archive",
            actor,
            from_stage=stage,
            to_stage=Stage.ARCHIVED,
            comment=f"replaced by version {version}",
            dagster_run_id=dagster_run_id,
            digest=client.get_model_version(name, other).tags.get(DIGEST_TAG, ""),
        )
    return displaced


def rollback_target(client: MlflowClient, records: list[AuditRecord], name: str) -> str:
    """The version that held Production before the current one: what a rollback requests."""
    current = version_in_stage(client, name, Stage.PRODUCTION)
    if current is None:
        raise GovernanceError(f"{name} has no version in Production to roll back")
    earlier = [
        r.version
        for r in records
        if r.changed_stage and r.to_stage == Stage.PRODUCTION and r.version != str(current.version)
    ]
    if not earlier:
        raise GovernanceError(
            f"{name} version {current.version} is the only version ever in Production"
        )
    return earlier[-1]
