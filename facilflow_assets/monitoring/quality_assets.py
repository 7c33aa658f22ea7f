"""monitoring/realized_quality: each day's scored rows against their outcomes, once known,
per version, beside the version's holdout figures; a blocking check when a version did
worse than its holdout by more than the allowed margin, and MODEL_QUALITY_DEGRADED."""

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
from mlflow.tracking import MlflowClient
from pydantic import Field

from facilflow_assets import plots
from facilflow_assets.asset_keys import MONITORING_GROUP, UseCaseKeys
from facilflow_assets.atomic_files import write_json_atomic
from facilflow_assets.evaluation.calibration import logged_calibration
from facilflow_assets.evaluation.decision import DECISION_THRESHOLD_METRIC
from facilflow_assets.evaluation.metrics import SCORING
from facilflow_assets.events.envelope import EventType, QualityDegraded
from facilflow_assets.features.target_rows import labelled_rows
from facilflow_assets.metadata import markdown_table
from facilflow_assets.monitoring.quality import (
    VERSION,
    Judgement,
    VersionDay,
    judge,
    outcomes_due,
    per_version,
    with_outcomes,
)
from facilflow_assets.monitoring.scored_days import scored_day, training_run
from facilflow_assets.scope import ModelScope
from facilflow_assets.serving.batch_assets import days_of
from facilflow_assets.use_case import UseCase
from resources import EventsResource, MlflowResource, StorageResource

QUALITY_CHECK = "quality_holds"
HOLDOUT_PREFIX = "holdout_"


class RealizedQualityConfig(dg.Config):
    max_degradation: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="How much worse than on its holdout a version's primary metric (AUC, or "
        "RMSE for a regression) may be on a day, relative to it (0.05: 5%).",
    )
    min_labelled_rows: int = Field(
        default=200, ge=1, description="Outcomes a version needs on a day to be judged."
    )
    outcome_delay_hours: float = Field(
        default=24.0,
        ge=0,
        description="How long after a row's time (and its label's look-ahead) its outcome "
        "reaches the warehouse; a day is judged once every outcome is due.",
    )
    decision_threshold: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Decide at this probability instead of each version's own threshold.",
    )
    as_of: str | None = Field(
        default=None, description="Judge as of this time (ISO 8601, UTC if naive); now if unset."
    )

    def judged_at(self) -> datetime:
        if self.as_of is None:
            return datetime.now(UTC)
        moment = datetime.fromisoformat(self.as_of)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def build_quality_assets(use_case: UseCase, scope: ModelScope) -> list[dg.AssetsDefinition]:
    keys = UseCaseKeys(scope)

    @dg.asset(
        key=keys.realized_quality,
        group_name=MONITORING_GROUP,
        partitions_def=days_of(use_case),
        kinds={"mlflow"},
        deps=[keys.batch_predictions],
        check_specs=[
            dg.AssetCheckSpec(
                QUALITY_CHECK,
                asset=keys.realized_quality,
                blocking=True,
                description="No version did worse on the day's outcomes than on its holdout "
                "by more than the allowed margin.",
            )
        ],
        description="The day's scored rows against their outcomes once known, per version: "
        "rows scored, coverage and the task's metrics, beside the version's holdout.",
    )
    def realized_quality(
        context: dg.AssetExecutionContext,
        config: RealizedQualityConfig,
        storage: StorageResource,
        mlflow: MlflowResource,
        events: EventsResource,
    ) -> dg.MaterializeResult:
        return measure_realized_quality(context, config, use_case, scope, storage, mlflow, events)

    return [realized_quality]


def measure_realized_quality(
    context: dg.AssetExecutionContext,
    config: RealizedQualityConfig,
    use_case: UseCase,
    scope: ModelScope,
    storage: StorageResource,
    mlflow: MlflowResource,
    events: EventsResource,
) -> dg.MaterializeResult:
    day, as_of = context.partition_key, config.judged_at()
    delay = timedelta(hours=config.outcome_delay_hours)
    rows = with_outcomes(
        scored_day(storage, scope, day), labelled_rows(storage, use_case), use_case, delay
    )
    complete = outcomes_due(rows, as_of)
    client = mlflow.client()
    experiment = mlflow.ensure_experiment(scope)
    runs = {
        version: training_run(client, scope, version)
        for version in rows[VERSION].cast(pl.String).unique().sort()
    }
    calibrations = {v: c for v, run in runs.items() if (c := logged_calibration(client, run))}
    found = []
    thresholds = {
        v: threshold
        for v, run in runs.items()
        if (threshold := _decision_threshold(client, run, use_case, config)) is not None
    }
    for version in per_version(rows, use_case, as_of, thresholds, calibrations):
        run = runs[version.version]
        holdout = _holdout_metrics(client, run)
        judgement = (
            judge(
                version,
                holdout,
                use_case.task,
                config.max_degradation,
                config.min_labelled_rows,
            )
            if complete
            else None
        )
        found.append(Findings(version, holdout, judgement, run))
    if not complete:
        context.log.info(f"{day}: outcomes not all due as of {as_of.isoformat()}; not judged")
    folder = storage.files(scope).monitoring_dir / "realized_quality"
    summary_path = write_json_atomic(_summary(day, as_of, complete, found), folder / f"{day}.json")
    degraded = [f for f in found if f.judgement is not None and f.judgement.degraded]
    _record_degradations(context, config, scope, events, degraded)
    # From "worse" to "why": each version's evaluation, and the day's drift report.
    links: dict[str, dg.MetadataValue] = {
        f"evaluation_v{f.day.version}": dg.MetadataValue.url(url)
        for f in found
        if (url := mlflow.run_url(experiment.experiment_id, f.evaluation_run))
    }
    drift_report = storage.files(scope).monitoring_dir / "feature_drift" / f"{day}.html"
    if drift_report.exists():
        links["drift_report"] = dg.MetadataValue.path(str(drift_report))
    run_link = _log_to_mlflow(client, experiment.experiment_id, context, day, found, mlflow)
    primary = SCORING[use_case.task].primary
    return dg.MaterializeResult(
        metadata={
            "judged": complete,
            "as_of": as_of.isoformat(),
            "rows_scored": sum(f.day.scored for f in found),
            "rows_labelled": sum(f.day.labelled for f in found),
            "versions": dg.MetadataValue.md(markdown_table(_table(found))),
            "scored_versions": [f.day.version for f in found],
            "degraded_versions": [f.day.version for f in degraded],
            **_primary_figures(found, primary),
            f"{primary}_over_days": dg.MetadataValue.md(_plot(folder, primary)),
            "summary": dg.MetadataValue.path(str(summary_path)),
            **({"mlflow_run": dg.MetadataValue.url(run_link)} if run_link else {}),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=QUALITY_CHECK,
                passed=not degraded,
                severity=dg.AssetCheckSeverity.ERROR,
                description=_verdict(day, complete, found),
                metadata={"judged": complete, **links},
            )
        ],
    )


def _decision_threshold(
    client: MlflowClient, run_id: str, use_case: UseCase, config: RealizedQualityConfig
) -> float | None:
    """The threshold the version's answers were decided at, as its evaluation logged it."""
    if use_case.task != "binary":
        return None  # no run to read
    logged = client.get_run(run_id).data.metrics.get(DECISION_THRESHOLD_METRIC)
    return use_case.threshold_of(logged, config.decision_threshold)


def _holdout_metrics(client: MlflowClient, run_id: str) -> dict[str, float]:
    """The version's holdout figures, as its evaluation logged them on its training run."""
    metrics = client.get_run(run_id).data.metrics
    return {
        name.removeprefix(HOLDOUT_PREFIX): value
        for name, value in metrics.items()
        if name.startswith(HOLDOUT_PREFIX) and not name.endswith("_lift")
    }


@dataclass(frozen=True)
class Findings:
    """A version's day, beside its holdout, judged once the day's outcomes are all due."""

    day: VersionDay
    holdout: dict[str, float]
    judgement: Judgement | None
    evaluation_run: str


def _summary(day: str, as_of: datetime, complete: bool, found: list[Findings]) -> dict:
    return {
        "partition": day,
        "as_of": as_of.isoformat(),
        "judged": complete,
        "versions": [
            {
                **asdict(f.day),
                "coverage": f.day.coverage,
                "holdout": {k: v for k, v in f.holdout.items() if k in f.day.metrics},
                "judgement": asdict(f.judgement) if f.judgement else None,
                "evaluation_run": f.evaluation_run,
            }
            for f in found
        ],
    }


def _record_degradations(
    context: dg.AssetExecutionContext,
    config: RealizedQualityConfig,
    scope: ModelScope,
    events: EventsResource,
    degraded: list[Findings],
) -> None:
    """One MODEL_QUALITY_DEGRADED per version and day, however often the day is judged."""
    day = context.partition_key
    recorded = [
        scope.event(
            EventType.MODEL_QUALITY_DEGRADED,
            QualityDegraded(
                partition=day,
                metric=judgement.metric,
                value=judgement.value,
                holdout_value=judgement.holdout,
                max_degradation=config.max_degradation,
                labelled_rows=f.day.labelled,
                evaluation_run=f.evaluation_run,
            ),
            version=f.day.version,
            dagster_run_id=context.run.run_id,
            once_per=f"quality:{day}",
        )
        for f in degraded
        if (judgement := f.judgement) is not None
    ]
    if recorded:
        events.record(recorded)


def _log_to_mlflow(
    client: MlflowClient,
    experiment_id: str,
    context: dg.AssetExecutionContext,
    day: str,
    found: list[Findings],
    mlflow: MlflowResource,
) -> str | None:
    """A run per day with each version's figures (`<metric>_v<version>`), for the MLflow UI."""
    run = client.create_run(
        experiment_id,
        run_name=f"realized-quality-{day}",
        tags={
            "facilflow.monitoring": "realized_quality",
            "facilflow.partition": day,
            "dagster_run_id": context.run.run_id,
        },
    )
    for f in found:
        version = f.day
        figures = {
            **version.metrics,
            **{f"estimated_{name}": value for name, value in version.estimated.items()},
            "coverage": version.coverage,
            "labelled": version.labelled,
            "scored": version.scored,
        }
        for name, value in figures.items():
            if value == value:  # NaN is not logged
                client.log_metric(run.info.run_id, f"{name}_v{version.version}", float(value))
    client.set_terminated(run.info.run_id)
    return mlflow.run_url(experiment_id, run.info.run_id)


def _table(found: list[Findings]) -> pl.DataFrame:
    nan = float("nan")
    rows = []
    for f in found:
        version = f.day
        rows.append(
            {
                "version": version.version,
                "scored": version.scored,
                "labelled": version.labelled,
                "coverage": round(version.coverage, 4),
                **{
                    f"{name} (day / holdout)": f"{value:.4f} / {f.holdout.get(name, nan):.4f}"
                    for name, value in version.metrics.items()
                },
                **{
                    f"estimated {name}": round(value, 4)
                    for name, value in version.estimated.items()
                },
                "verdict": f.judgement.reason if f.judgement else "not judged yet",
            }
        )
    return pl.DataFrame(rows)


def _primary_figures(found: list[Findings], metric: str) -> dict[str, float]:
    """Per version, the day's primary metric, its holdout's and its estimate, where known:
    `auc_v3`, `holdout_auc_v3`, `estimated_auc_v3`."""
    figures = {}
    for f in found:
        version = f.day.version
        for name, source in (
            (metric, f.day.metrics),
            (f"holdout_{metric}", f.holdout),
            (f"estimated_{metric}", f.day.estimated),
        ):
            value = source.get(metric, float("nan"))
            if value == value:  # NaN is not recorded
                figures[f"{name}_v{version}"] = float(value)
    return figures


def _verdict(day: str, complete: bool, found: list[Findings]) -> str:
    if not complete:
        return f"{day}: not judged, its outcomes are not all due yet"
    return "; ".join(f"version {f.day.version}: {f.judgement.reason}" for f in found if f.judgement)


def _plot(folder: Path, metric: str) -> str:
    """The primary metric of every day, realized where outcomes are known and estimated
    from the scores, per version, against its holdout."""
    realized: dict[str, tuple[list, list]] = {}
    estimated: dict[str, tuple[list, list]] = {}
    holdout: dict[str, float] = {}
    for path in sorted(folder.glob("*.json")):
        summary = json.loads(path.read_text())
        day = datetime.fromisoformat(summary["partition"])
        for version in summary["versions"]:
            name = version["version"]
            sources = ((realized, version["metrics"]), (estimated, version.get("estimated", {})))
            for series, figures in sources:
                if (value := figures.get(metric)) is not None:
                    dates, values = series.setdefault(name, ([], []))
                    dates.append(day)
                    values.append(value)
            if metric in version["holdout"]:
                holdout[name] = version["holdout"][metric]
    figure = plots.metric_over_days(realized, holdout, metric, estimated)
    return plots.markdown_image(plots.png(figure), metric)
