"""The registered-version asset: an evaluated candidate as a version of `<tenant>.<use_case>`."""

import dagster as dg
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from facilflow_assets.asset_keys import REGISTRY_GROUP, UseCaseKeys
from facilflow_assets.evaluation.assets import REPORT_FILE
from facilflow_assets.evaluation.report import EvaluationReport
from facilflow_assets.governance.audit import AuditTrail
from facilflow_assets.governance.digest import DIGEST_TAG
from facilflow_assets.governance.integrity import unconfirmed_holder
from facilflow_assets.governance.stages import STAGE_TAG, Stage, version_in_stage
from facilflow_assets.governance.transitions import stage_of
from facilflow_assets.registry.versions import (
    ensure_registered_model,
    existing_version,
    register_version,
    registered_event,
    stage_evaluated,
)
from facilflow_assets.scope import ModelScope
from facilflow_assets.training.candidate import CANDIDATE_FILE, Candidate
from facilflow_assets.use_case import UseCase
from resources import EventsResource, MlflowResource, StorageResource

AUDIT_CHECK = "audit_trail_confirms_stages"


class RegistrationRefused(RuntimeError):
    """The candidate did not pass its evaluation, or the report is not about it."""


def build_registry_assets(
    use_case: UseCase, scope: ModelScope
) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    """The use case's registered version, and the check that the audit trail confirms the
    Production and Staging aliases."""
    keys = UseCaseKeys(scope)

    @dg.asset(
        key=keys.registered_model_version,
        group_name=REGISTRY_GROUP,
        kinds={"mlflow"},
        deps=[keys.evaluation_report],
        description=f"The evaluated candidate registered as a new version of "
        f"{scope.registered_model_name} and moved to Staging.",
    )
    def registered_model_version(
        context: dg.AssetExecutionContext,
        storage: StorageResource,
        mlflow: MlflowResource,
        events: EventsResource,
    ) -> dg.MaterializeResult:
        return register(context, use_case, scope, storage, mlflow, events)

    @dg.asset_check(
        asset=keys.registered_model_version,
        name=AUDIT_CHECK,
        description="The Production and Staging aliases point where the audit trail's last "
        "moves put them, with the files recorded then; the sensors report a failure of it "
        "whenever they find an alias, tag or file the trail does not confirm.",
    )
    def audit_trail_confirms_stages(mlflow: MlflowResource) -> dg.AssetCheckResult:
        return audit_check(mlflow.client(), scope)

    return [registered_model_version], [audit_trail_confirms_stages]


def register(
    context: dg.AssetExecutionContext,
    use_case: UseCase,
    scope: ModelScope,
    storage: StorageResource,
    mlflow: MlflowResource,
    events: EventsResource,
) -> dg.MaterializeResult:
    """Register the use case's passed candidate and stage it, once per training run."""
    files = storage.files(scope)
    candidate = Candidate.read(files.models_dir / CANDIDATE_FILE)
    report = EvaluationReport.read(files.models_dir / REPORT_FILE)
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
    audit = AuditTrail(client, scope.audit_experiment_name)
    name = ensure_registered_model(client, scope, use_case.description)
    version = existing_version(client, name, candidate.run_id)
    if version is None:
        version = register_and_stage(client, audit, name, candidate, report)
        context.log.info(f"registered {name} version {version.version} in {Stage.STAGING}")
    elif stage_of(version) == Stage.NONE:  # registered when its run was tagged promote=true
        stage_evaluated(client, audit, name, version, report)
        context.log.info(f"{name} version {version.version} passed: now in {Stage.STAGING}")
    else:  # staged before: its stage is governance's business now, not this asset's
        context.log.info(f"run {candidate.run_id} is already {name} version {version.version}")
    stage = Stage(client.get_model_version(name, version.version).tags[STAGE_TAG])
    # Also on a re-run that found the version: the event id is the run's, so it goes out once.
    events.record(
        [registered_event(scope, version, stage, report.candidate_metrics, context.run.run_id)]
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
            f"holdout_{report.primary_metric}": report.candidate_metrics[report.primary_metric],
            **({"mlflow_model_version": dg.MetadataValue.url(url)} if url else {}),
        }
    )


def register_and_stage(
    client: MlflowClient,
    audit: AuditTrail,
    name: str,
    candidate: Candidate,
    report: EvaluationReport,
) -> ModelVersion:
    """A new version of a passed candidate, in Staging; none at all if a step fails."""
    version = register_version(client, name, candidate)
    try:
        stage_evaluated(client, audit, name, version, report)
    except BaseException:
        client.delete_model_version(name, version.version)
        raise
    return version


def audit_check(client: MlflowClient, scope: ModelScope) -> dg.AssetCheckResult:
    name = scope.registered_model_name
    records = AuditTrail(client, scope.audit_experiment_name).history(name)
    problems = []
    for stage in (Stage.STAGING, Stage.PRODUCTION):
        holder = version_in_stage(client, name, stage)
        if holder is not None:
            digest = holder.tags.get(DIGEST_TAG, "")
            problems.append(unconfirmed_holder(records, stage, str(holder.version), digest))
    problems = [problem for problem in problems if problem]
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(problems) or "both aliases are where the audit trail put them",
        metadata={"audit_records": len(records)},
    )


def failed_audit_check(scope: ModelScope, problem: str) -> dg.AssetCheckEvaluation:
    """A failure of the audit-trail check, as a sensor reports what it found."""
    return dg.AssetCheckEvaluation(
        asset_key=UseCaseKeys(scope).registered_model_version,
        check_name=AUDIT_CHECK,
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        description=problem,
    )
