"""Registering a training run's model as a version, and staging it once its evaluation passed."""

import time

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from facilflow_assets.evaluation.decision import DECISION_THRESHOLD_TAG
from facilflow_assets.evaluation.report import EvaluationReport
from facilflow_assets.events.envelope import EventType, LifecycleEvent, Registered
from facilflow_assets.features.service_versions import FEATURE_SERVICE_TAG
from facilflow_assets.governance.audit import AuditTrail
from facilflow_assets.governance.digest import DIGEST_TAG, version_digest
from facilflow_assets.governance.stages import STAGE_TAG, Stage
from facilflow_assets.governance.transitions import SYSTEM_ACTOR, transition
from facilflow_assets.scope import ModelScope
from facilflow_assets.training.candidate import Candidate

SOURCE_RUN_TAG = "facilflow.source_run"
READY_TIMEOUT_S = 300


def ensure_registered_model(client: MlflowClient, scope: ModelScope, description: str) -> str:
    """The use case's registered model, created on first use; returns its name."""
    name = scope.registered_model_name
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name,
            tags={f"facilflow.{k}": v for k, v in scope.event_fields().items()},
            description=f"{description}, of tenant '{scope.tenant}' "
            f"(use case '{scope.use_case}'), registered by FacilFlow.",
        )
    return name


def existing_version(client: MlflowClient, name: str, run_id: str) -> ModelVersion | None:
    """The version already registered from `run_id`: registering twice adds nothing."""
    versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return versions[0] if versions else None


def registered_event(
    scope: ModelScope,
    version: ModelVersion,
    stage: Stage,
    metrics: dict[str, float],
    dagster_run_id: str | None = None,
) -> LifecycleEvent:
    """MODEL_REGISTERED, once per source run, whether the sensor or the asset got there first."""
    if version.run_id is None:
        raise ValueError(f"{version.name} version {version.version} has no source run")
    payload = Registered(mlflow_run_id=version.run_id, stage=stage.value, metrics=metrics)
    return scope.event(
        EventType.MODEL_REGISTERED,
        payload,
        version=str(version.version),
        dagster_run_id=dagster_run_id,
        once_per=version.run_id,
    )


def register_version(client: MlflowClient, name: str, candidate: Candidate) -> ModelVersion:
    """`candidate` as a new version in stage None, ready to load; none at all if it fails."""
    logged_model = client.get_logged_model(candidate.model_uri.removeprefix("models:/"))
    version = client.create_model_version(
        name,
        source=logged_model.artifact_location,
        run_id=candidate.run_id,
        model_id=logged_model.model_id,
        description=f"Trained on {candidate.feature_service} "
        f"(data version {candidate.data_version}); not evaluated yet.",
        tags={
            SOURCE_RUN_TAG: candidate.run_id,
            FEATURE_SERVICE_TAG: candidate.feature_service,
            "facilflow.data_version": candidate.data_version,
            STAGE_TAG: Stage.NONE.value,
        },
    )
    try:
        return _wait_until_ready(client, name, version.version)
    except BaseException:
        client.delete_model_version(name, version.version)
        raise


class DigestMismatch(RuntimeError):
    """The registered version's files are not the ones the evaluation scored."""


def stage_evaluated(
    client: MlflowClient,
    audit: AuditTrail,
    name: str,
    version: ModelVersion,
    report: EvaluationReport,
) -> None:
    """Record the passed evaluation on `version`, bound to the digest of the files it
    scored, and move it to Staging (audited)."""
    metrics = report.candidate_metrics
    primary = report.primary_metric
    number = str(version.version)
    found = version_digest(client, name, number)
    if found != report.model_digest:
        raise DigestMismatch(
            f"{name} version {number}: its files are {found}, not the {report.model_digest} "
            "the evaluation scored; it is not staged"
        )
    client.update_model_version(
        name,
        number,
        description=(
            f"{(version.description or '').removesuffix(' not evaluated yet.')} Holdout "
            f"{primary.upper()} {metrics[primary]:.4f} against {report.baseline} "
            f"{report.baseline_metrics[primary]:.4f} ({report.lift:+.2%} better)."
        ),
    )
    tags = {
        DIGEST_TAG: report.model_digest,
        "facilflow.baseline": report.baseline,
        **{f"facilflow.holdout_{k}": f"{v:.6f}" for k, v in metrics.items()},
        f"facilflow.holdout_{primary}_lift": f"{report.lift:.6f}",
        **(
            {}
            if report.decision_threshold is None
            else {DECISION_THRESHOLD_TAG: f"{report.decision_threshold:.6f}"}
        ),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, number, key, value)
    transition(
        client,
        audit,
        name,
        number,
        Stage.STAGING,
        SYSTEM_ACTOR,
        f"evaluation passed against {report.baseline}",
    )


def _wait_until_ready(client: MlflowClient, name: str, version: str) -> ModelVersion:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        current = client.get_model_version(name, version)
        if current.status == "READY":
            return current
        if current.status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
            raise RuntimeError(
                f"{name} version {version} did not become ready ({current.status}: "
                f"{current.status_message})"
            )
        time.sleep(1)
