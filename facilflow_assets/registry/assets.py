"""The registered-version asset: an evaluated candidate as a version of `<tenant>.<use_case>`."""

import time

import dagster as dg
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from facilflow_assets.evaluation.assets import EVALUATION_KEY, REPORT_FILE
from facilflow_assets.evaluation.report import EvaluationReport
from facilflow_assets.events.envelope import EventType, Registered
from facilflow_assets.registry.stages import STAGE_TAG, Stage, move_to_stage
from facilflow_assets.training.candidate import Candidate
from resources import EventsResource, MlflowResource, StorageResource, TenantResource

REGISTRY_GROUP = "registry"
REGISTERED_VERSION_KEY = dg.AssetKey([REGISTRY_GROUP, "registered_model_version"])
SOURCE_RUN_TAG = "facilflow.source_run"
READY_TIMEOUT_S = 300


class RegistrationRefused(RuntimeError):
    """The candidate did not pass its evaluation, or the report is not about it."""


@dg.asset(
    key=REGISTERED_VERSION_KEY,
    group_name=REGISTRY_GROUP,
    kinds={"mlflow"},
    deps=[EVALUATION_KEY],
    description="The evaluated candidate registered as a new version of the use case's model "
    "and moved to Staging.",
)
def registered_model_version(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    mlflow: MlflowResource,
    tenant: TenantResource,
    events: EventsResource,
) -> dg.MaterializeResult:
    candidate = Candidate.read(storage.models_dir / "candidate.json")
    report = EvaluationReport.read(storage.models_dir / REPORT_FILE)
    if report.candidate_run_id != candidate.run_id:
        raise RegistrationRefused(
            f"the evaluation report is about run {report.candidate_run_id}, not the candidate "
            f"{candidate.run_id}; materialize evaluation first"
        )
    if not report.passed:
        raise RegistrationRefused(
            f"run {candidate.run_id} failed its evaluation: {'; '.join(report.failures)}"
        )
    client = mlflow.client()
    name = tenant.registered_model_name
    _ensure_registered_model(client, name, tenant)
    version = _existing_version(client, name, candidate.run_id)
    if version is None:
        version = _register(client, name, candidate, report)
        context.log.info(f"registered {name} version {version.version} in {Stage.STAGING}")
    else:  # registered before: its stage is governance's business now, not this asset's
        context.log.info(f"run {candidate.run_id} is already {name} version {version.version}")
    stage = Stage(client.get_model_version(name, version.version).tags[STAGE_TAG])
    registered = Registered(
        mlflow_run_id=candidate.run_id, stage=stage.value, metrics=report.candidate_metrics
    )
    # Also on a re-run that found the version: the event id is the run's, so it goes out once.
    events.record(
        [
            tenant.event(
                EventType.MODEL_REGISTERED,
                registered,
                version=str(version.version),
                dagster_run_id=context.run_id,
                once_per=candidate.run_id,
            )
        ]
    )
    url = mlflow.model_version_url(name, version.version)
    return dg.MaterializeResult(
        metadata={
            "registered_model": name,
            "version": str(version.version),
            "stage": stage.value,
            "alias": stage.alias or "",
            "model_uri": f"models:/{name}/{version.version}",
            "source_run": candidate.run_id,
            "holdout_auc": report.candidate_metrics["auc"],
            **({"mlflow_model_version": dg.MetadataValue.url(url)} if url else {}),
        }
    )


def _ensure_registered_model(client: MlflowClient, name: str, tenant: TenantResource) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name,
            tags={f"facilflow.{k}": v for k, v in tenant.event_fields().items()},
            description=f"Flight-delay classifier of tenant '{tenant.tenant}' "
            f"(use case '{tenant.use_case}'), registered by FacilFlow.",
        )


def _existing_version(client: MlflowClient, name: str, run_id: str) -> ModelVersion | None:
    """The version already registered from `run_id`: registering twice adds nothing."""
    versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return versions[0] if versions else None


def _register(
    client: MlflowClient, name: str, candidate: Candidate, report: EvaluationReport
) -> ModelVersion:
    """A new version with its description and tags, in Staging; none at all if a step fails."""
    metrics = report.candidate_metrics
    logged_model = client.get_logged_model(candidate.model_uri.removeprefix("models:/"))
    version = client.create_model_version(
        name,
        source=logged_model.artifact_location,
        run_id=candidate.run_id,
        model_id=logged_model.model_id,
        description=(
            f"Trained on {candidate.feature_service} (data version {candidate.data_version}). "
            f"Holdout AUC {metrics['auc']:.4f} against {report.baseline} "
            f"{report.baseline_metrics['auc']:.4f} ({report.auc_lift:+.2%})."
        ),
        tags={
            SOURCE_RUN_TAG: candidate.run_id,
            "facilflow.feature_service": candidate.feature_service,
            "facilflow.data_version": candidate.data_version,
            "facilflow.baseline": report.baseline,
            **{f"facilflow.holdout_{k}": f"{v:.6f}" for k, v in metrics.items()},
            "facilflow.holdout_auc_lift": f"{report.auc_lift:.6f}",
            STAGE_TAG: Stage.NONE.value,
        },
    )
    try:
        ready = _wait_until_ready(client, name, version.version)
        move_to_stage(client, name, ready.version, Stage.STAGING)
        return ready
    except BaseException:
        client.delete_model_version(name, version.version)
        raise


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
