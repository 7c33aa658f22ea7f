"""Stage transitions of a registered version, each with a comment and an audit record."""

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from facilflow_assets.governance.audit import AuditTrail
from facilflow_assets.registry.stages import (
    STAGE_TAG,
    Stage,
    move_to_stage,
    reconcile_stages,
    version_in_stage,
)


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
    current = stage_of(model_version(client, name, version))
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
        )
    return displaced


def rollback(
    client: MlflowClient, audit: AuditTrail, name: str, actor: str, comment: str
) -> tuple[str, str]:
    """Return Production to the version that held it before the current one; returns that
    version and the one it replaced."""
    current = version_in_stage(client, name, Stage.PRODUCTION)
    if current is None:
        raise GovernanceError(f"{name} has no version in Production to roll back")
    earlier = [
        r.version
        for r in audit.history(name)
        if r.changed_stage and r.to_stage == Stage.PRODUCTION and r.version != str(current.version)
    ]
    if not earlier:
        raise GovernanceError(
            f"{name} version {current.version} is the only version ever in Production"
        )
    transition(client, audit, name, earlier[-1], Stage.PRODUCTION, actor, comment, "rollback")
    return earlier[-1], str(current.version)
