"""drift_retraining_sensor: drift, or realized quality worse than the holdout's, on enough
recent days of the Production version retrains it.

The retraining learns from what was flagged: when flagged days fall before the version's
training window (a season it never saw), the window starts at the month of the earliest
of them. Otherwise the window stays as configured, over the training set as the feature
pipeline has refreshed it.
"""

from collections.abc import Callable, Mapping
from datetime import date

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from facilflow_assets.asset_keys import UseCaseKeys, op_name
from facilflow_assets.scope import ModelScope
from facilflow_assets.serving.models import PRODUCTION, ModelLoadError, resolve
from resources import MlflowResource, RetrainingPolicyResource

MATERIALIZATIONS_READ = 200  # per monitoring asset: far more than any policy's window of days
TRIGGERS = {
    "feature": "feature_drift",
    "prediction": "prediction_drift",
    "quality": "quality_degraded",
}


# A day's verdict for a version from its materialization's metadata: flagged or not, or
# None when the day does not speak of that version (yet).
Verdict = Callable[[Mapping[str, dg.MetadataValue], str], bool | None]


def drift_verdict(metadata: Mapping[str, dg.MetadataValue], version: str) -> bool | None:
    if "drifted" not in metadata or metadata["model_version"].value != version:
        return None
    return bool(metadata["drifted"].value)


def quality_verdict(metadata: Mapping[str, dg.MetadataValue], version: str) -> bool | None:
    """Degraded or not on a judged day the version scored on; a day whose outcomes are not
    all due is no verdict."""
    if "judged" not in metadata or metadata["judged"].value is not True:
        return None
    if version not in _names(metadata, "scored_versions"):
        return None
    return version in _names(metadata, "degraded_versions")


def _names(metadata: Mapping[str, dg.MetadataValue], entry: str) -> list[str]:
    value = metadata[entry].value if entry in metadata else []
    return [str(name) for name in value] if isinstance(value, list) else []


def flagged_days(
    instance: dg.DagsterInstance,
    key: dg.AssetKey,
    version: str,
    within_days: int,
    verdict: Verdict = drift_verdict,
) -> tuple[list[str], int]:
    """Of `version`'s latest `within_days` monitored days of `key` (the newest
    materialization with a verdict counts for its day), the flagged ones, and how many days
    were looked at."""
    verdicts: dict[str, bool] = {}
    for record in instance.fetch_materializations(key, limit=MATERIALIZATIONS_READ).records:
        materialization = record.asset_materialization
        if materialization is None or materialization.partition is None:
            continue
        found = verdict(materialization.metadata, version)
        if found is not None:
            verdicts.setdefault(materialization.partition, found)
    latest = sorted(verdicts, reverse=True)[:within_days]
    return sorted(day for day in latest if verdicts[day]), len(latest)


def build_drift_retraining_sensor(
    scope: ModelScope, training_job: UnresolvedAssetJobDefinition
) -> dg.SensorDefinition:
    @dg.sensor(
        name=scope.definition_name("drift_retraining_sensor"),
        job=training_job,
        minimum_interval_seconds=60,
        description=f"Starts {training_job.name} once the Production version has drifted, or "
        "done worse than on its holdout, on enough of its latest monitored days (the "
        "retraining policy); once per version.",
    )
    def drift_retraining_sensor(
        context: dg.SensorEvaluationContext,
        mlflow: MlflowResource,
        retraining: RetrainingPolicyResource,
    ):
        return retrain_on_drift(context, scope, mlflow, retraining)

    return drift_retraining_sensor


def retrain_on_drift(
    context: dg.SensorEvaluationContext,
    scope: ModelScope,
    mlflow: MlflowResource,
    retraining: RetrainingPolicyResource,
):
    if not retraining.kinds:
        return dg.SkipReason("the retraining policy counts no kind of drift or degradation")
    keys = UseCaseKeys(scope)
    watched: dict[str, tuple[dg.AssetKey, Verdict]] = {
        "feature": (keys.feature_drift, drift_verdict),
        "prediction": (keys.prediction_drift, drift_verdict),
        "quality": (keys.realized_quality, quality_verdict),
    }
    name = scope.registered_model_name
    client = mlflow.client()
    try:
        version = resolve(client, name, PRODUCTION).version
    except ModelLoadError:
        return dg.SkipReason(f"{name} has no Production version")
    findings = {}
    for kind in retraining.kinds:
        key, verdict = watched[kind]
        findings[kind] = flagged_days(
            context.instance, key, version, retraining.within_days, verdict
        )
    for kind, (days, _) in findings.items():
        if len(days) >= retraining.drifted_days:
            source_run = client.get_model_version(name, version).run_id
            if source_run is None:
                raise ValueError(f"{name} version {version} has no training run to retrain like")
            trained = client.get_run(source_run)
            window = _window_covering(days, trained.data.params.get("train_start"))
            return dg.RunRequest(
                # One retraining per Production version, however long its drift lasts.
                run_key=f"retrain:{name}:v{version}",
                run_config={"ops": {op_name(keys.trained_model): {"config": window}}},
                tags={
                    "facilflow/trigger": TRIGGERS[kind],
                    "facilflow/flagged_version": version,
                    "facilflow/flagged_days": ",".join(days),
                },
            )
    seen = "; ".join(
        f"{kind}: {len(days)} of {looked_at} day(s)" for kind, (days, looked_at) in findings.items()
    )
    return dg.SkipReason(
        f"version {version} was flagged on fewer than {retraining.drifted_days} of its latest "
        f"{retraining.within_days} monitored days ({seen})"
    )


def _window_covering(days: list[str], train_start: str | None) -> dict[str, str]:
    """Training config whose window reaches back to the earliest drifted day's month."""
    earliest = date.fromisoformat(min(days)).replace(day=1).isoformat()
    if train_start is None or earliest >= train_start:
        return {}
    return {"train_start": earliest}
