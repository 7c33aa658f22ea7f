"""Drift assets: each day's scored flights against the serving model's own reference.

Feature drift compares the day's model inputs with a sample of the rows the model was
trained on; prediction drift compares the day's scores with the model's holdout scores.
Each writes Evidently's HTML report and a JSON summary, logs both to a monitoring run in
MLflow, fails its check on drift and then publishes MODEL_DRIFT_DETECTED.
"""

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Literal, NamedTuple

import dagster as dg
import polars as pl
from mlflow.tracking import MlflowClient
from pydantic import Field

from facilflow_assets.asset_keys import MONITORING_GROUP, UseCaseKeys
from facilflow_assets.atomic_files import write_json_atomic, write_text_atomic
from facilflow_assets.drift.reference import (
    FEATURES_FILE,
    PREDICTION,
    PREDICTIONS_FILE,
    read_reference,
    read_thresholds,
)
from facilflow_assets.drift.statistics import (
    DriftResult,
    column_drift,
    is_categorical,
    mean_shift,
)
from facilflow_assets.events.envelope import DriftDetected, EventType
from facilflow_assets.metadata import markdown_table
from facilflow_assets.monitoring.scored_days import scored_day, training_run
from facilflow_assets.scope import ModelScope
from facilflow_assets.serving.batch_assets import days_of
from facilflow_assets.use_case import UseCase
from resources import EventsResource, MlflowResource, StorageResource

REPORT_SAMPLE_ROWS = 20_000  # rows of each side drawn in the HTML report; verdicts use all


class FeatureDriftConfig(dg.Config):
    drift_share: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Share of drifted features that makes a drifted day; a feature drifts "
        "when the day is further from the reference than its calibrated threshold.",
    )


class PredictionDriftConfig(dg.Config):
    max_mean_shift_std: float = Field(
        default=2.0,
        gt=0,
        description="A day whose mean score moves further than this many standard deviations "
        "of the holdout scores has drifted (Evidently's distribution test is in the report).",
    )


class ScoredDay(NamedTuple):
    scored: pl.DataFrame  # the day's flights with their model inputs and scores
    version: str  # the version that scored them
    client: MlflowClient
    source_run: str  # that version's training run, which holds its reference


def _scored_day_with_source(
    storage: StorageResource, mlflow: MlflowResource, scope: ModelScope, day: str
) -> ScoredDay:
    scored = scored_day(storage, scope, day)
    version = scored["model_version"][0]
    client = mlflow.client()
    return ScoredDay(scored, version, client, training_run(client, scope, version))


_NOTHING_COMPARED = (
    "<html><body><h1>No column to compare</h1><p>Every column ({columns}) lacks values on "
    "one side; the day's summary names the side.</p></body></html>"
)


def write_drift_report(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    path: Path,
    result: DriftResult,
    thresholds: dict[str, float] | None = None,
) -> None:
    """Evidently's data drift preset, as HTML, on samples of both frames, judging with the
    asset's own thresholds. Only the columns with values on both sides: Evidently refuses an
    empty column, and the verdict already states why the others were not compared."""
    # Imported here: Evidently takes seconds to import, which loading the definitions skips.
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = result.compared_columns
    if not columns:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(_NOTHING_COMPARED.format(columns=", ".join(reference.columns)), path)
        return
    categorical = [c for c in columns if is_categorical(reference, c)]
    sample = [
        f.select(columns)
        .with_columns(pl.exclude(categorical).cast(pl.Float64))
        .sample(min(f.height, REPORT_SAMPLE_ROWS), seed=0)
        for f in (reference, current)
    ]
    definition = DataDefinition(
        numerical_columns=[c for c in columns if c not in categorical],
        categorical_columns=categorical,
    )
    datasets = [Dataset.from_pandas(f.to_pandas(), data_definition=definition) for f in sample]
    kept = {c: t for c, t in (thresholds or {}).items() if c in columns} or None
    preset = DataDriftPreset(drift_share=result.drift_share_threshold, per_column_threshold=kept)
    snapshot = Report([preset]).run(current_data=datasets[1], reference_data=datasets[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))


class DriftMeasurement(NamedTuple):
    """One day's drift of one kind, as measured against the version's reference."""

    kind: Literal["feature", "prediction"]
    result: DriftResult
    reference: pl.DataFrame
    current: pl.DataFrame
    version: str
    thresholds: dict[str, float] | None = None  # calibrated per column, when recorded
    extra: Mapping[str, object] = {}  # figures of this kind for the summary and metadata


def _publish(
    context: dg.AssetExecutionContext,
    measured: DriftMeasurement,
    scope: ModelScope,
    storage: StorageResource,
    mlflow: MlflowResource,
    events: EventsResource,
) -> dg.MaterializeResult:
    """Reports on disk and in MLflow, the drift event, the check and the metadata."""
    kind, result, reference, current, version, thresholds, extra = measured
    day = context.partition_key
    folder = storage.files(scope).monitoring_dir / f"{kind}_drift"
    html, summary_path = folder / f"{day}.html", folder / f"{day}.json"
    write_drift_report(reference, current, html, result, thresholds)
    summary = {
        "partition": day,
        "model_version": version,
        "drifted": result.drifted,
        "drift_share": result.drift_share,
        "drifted_columns": result.drifted_columns,
        "unjudged_columns": result.unjudged_columns,
        "current_rows": result.current_rows,
        "reference_rows": result.reference_rows,
        "columns": [asdict(c) for c in result.columns],
        **extra,
    }
    write_json_atomic(summary, summary_path)
    client = mlflow.client()
    experiment = mlflow.ensure_experiment(scope)
    run = client.create_run(
        experiment.experiment_id,
        run_name=f"{kind}-drift-{day}",
        tags={
            "facilflow.monitoring": f"{kind}_drift",
            "facilflow.partition": day,
            "facilflow.model_version": version,
            "dagster_run_id": context.run.run_id,
        },
    )
    client.log_metric(run.info.run_id, "drift_share", result.drift_share)
    for path in (html, summary_path):
        client.log_artifact(run.info.run_id, str(path), "monitoring")
    client.set_terminated(run.info.run_id)
    if result.drifted:
        payload = DriftDetected(
            kind=kind,
            partition=day,
            drift_share=result.drift_share,
            drifted_columns=result.drifted_columns,
            report=str(html),
        )
        event = scope.event(
            EventType.MODEL_DRIFT_DETECTED,
            payload,
            version=version,
            dagster_run_id=context.run.run_id,
            once_per=f"{kind}:{day}",
        )
        events.record([event])
    verdict = f"{len(result.drifted_columns)} of {len(result.columns)} column(s) drifted"
    if result.unjudged_columns:
        verdict += f"; not judged, no values in the reference: {', '.join(result.unjudged_columns)}"
    url = mlflow.run_url(experiment.experiment_id, run.info.run_id)
    return dg.MaterializeResult(
        metadata={
            "drifted": result.drifted,
            "drift_share": result.drift_share,
            "drifted_columns": dg.MetadataValue.json(result.drifted_columns),
            "unjudged_columns": dg.MetadataValue.json(result.unjudged_columns),
            "scores": dg.MetadataValue.md(markdown_table(result.table())),
            "model_version": version,
            "current_rows": result.current_rows,
            "report": dg.MetadataValue.path(str(html)),
            "summary": dg.MetadataValue.path(str(summary_path)),
            **({"mlflow_run": dg.MetadataValue.url(url)} if url else {}),
            **{k: v for k, v in extra.items() if isinstance(v, int | float | str)},
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=f"no_{kind}_drift",
                passed=not result.drifted,
                description=verdict,
                metadata={"drift_share": result.drift_share},
            )
        ],
    )


def build_monitoring_assets(use_case: UseCase, scope: ModelScope) -> list[dg.AssetsDefinition]:
    """The use case's daily feature and prediction drift."""
    keys = UseCaseKeys(scope)
    days = days_of(use_case)

    @dg.asset(
        key=keys.feature_drift,
        group_name=MONITORING_GROUP,
        partitions_def=days,
        kinds={"evidently", "mlflow"},
        deps=[keys.batch_predictions],
        check_specs=[dg.AssetCheckSpec("no_feature_drift", asset=keys.feature_drift)],
        description="The day's model inputs against a sample of the rows the serving version "
        "was trained on, column by column with Evidently's drift tests.",
    )
    def feature_drift(
        context: dg.AssetExecutionContext,
        config: FeatureDriftConfig,
        storage: StorageResource,
        mlflow: MlflowResource,
        events: EventsResource,
    ) -> dg.MaterializeResult:
        return measure_feature_drift(context, config, scope, storage, mlflow, events)

    @dg.asset(
        key=keys.prediction_drift,
        group_name=MONITORING_GROUP,
        partitions_def=days,
        kinds={"evidently", "mlflow"},
        deps=[keys.batch_predictions],
        check_specs=[dg.AssetCheckSpec("no_prediction_drift", asset=keys.prediction_drift)],
        description="The day's scores against the serving version's holdout scores: "
        "Evidently's distribution test, and the shift of the mean in reference standard "
        "deviations.",
    )
    def prediction_drift(
        context: dg.AssetExecutionContext,
        config: PredictionDriftConfig,
        storage: StorageResource,
        mlflow: MlflowResource,
        events: EventsResource,
    ) -> dg.MaterializeResult:
        return measure_prediction_drift(
            context, config, use_case.score, scope, storage, mlflow, events
        )

    return [feature_drift, prediction_drift]


def measure_feature_drift(
    context: dg.AssetExecutionContext,
    config: FeatureDriftConfig,
    scope: ModelScope,
    storage: StorageResource,
    mlflow: MlflowResource,
    events: EventsResource,
) -> dg.MaterializeResult:
    day = _scored_day_with_source(storage, mlflow, scope, context.partition_key)
    reference = read_reference(day.client, day.source_run, FEATURES_FILE)
    thresholds = read_thresholds(day.client, day.source_run)
    if thresholds is None:
        context.log.warning(
            f"version {day.version} has no calibrated thresholds (evaluated before they were "
            "recorded): Evidently's default thresholds apply"
        )
    columns = reference.columns
    where = f"the features of {context.partition_key}"
    result = column_drift(reference, day.scored, columns, config.drift_share, where, thresholds)
    context.log.info(f"feature drift: {result.drifted_columns or 'none'}")
    current = day.scored.select(columns)
    measured = DriftMeasurement("feature", result, reference, current, day.version, thresholds)
    return _publish(context, measured, scope, storage, mlflow, events)


def measure_prediction_drift(
    context: dg.AssetExecutionContext,
    config: PredictionDriftConfig,
    score: str,
    scope: ModelScope,
    storage: StorageResource,
    mlflow: MlflowResource,
    events: EventsResource,
) -> dg.MaterializeResult:
    day = _scored_day_with_source(storage, mlflow, scope, context.partition_key)
    reference = read_reference(day.client, day.source_run, PREDICTIONS_FILE)
    current = day.scored.select(pl.col(score).alias(PREDICTION))
    result = mean_shift(reference, current, PREDICTION, config.max_mean_shift_std)
    shift_std = result.columns[0].score
    extra = {"mean_shift_std": shift_std, "max_mean_shift_std": config.max_mean_shift_std}
    context.log.info(f"prediction drift: {result.drifted} (mean shift {shift_std:.2f} std)")
    measured = DriftMeasurement("prediction", result, reference, current, day.version, extra=extra)
    return _publish(context, measured, scope, storage, mlflow, events)
