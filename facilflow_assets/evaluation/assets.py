"""The evaluation-report asset and the blocking check that gates registration."""

import tempfile
from pathlib import Path

import dagster as dg
import mlflow
import mlflow.artifacts as mlflow_artifacts
import mlflow.lightgbm as mlflow_lightgbm  # `mlflow` is the resource inside the asset
import polars as pl

from facilflow_assets import plots
from facilflow_assets.evaluation.baseline import (
    Baseline,
    historical_rate_baseline,
    production_baseline,
)
from facilflow_assets.evaluation.metrics import classification_metrics
from facilflow_assets.evaluation.report import EvaluationConfig, EvaluationReport, judge
from facilflow_assets.governance.digest import directory_digest
from facilflow_assets.metadata import markdown_table
from facilflow_assets.monitoring.reference import log_reference
from facilflow_assets.training.assets import TRAINED_MODEL_KEY
from facilflow_assets.training.candidate import Candidate
from facilflow_assets.training.config import parse_utc
from facilflow_assets.training.dataset import (
    TIME_COLUMN,
    feature_matrix,
    read_training_set,
    train_slice,
)
from facilflow_assets.training.tracking import log_png
from facilflow_assets.use_case import current_use_case
from resources import MlflowResource, StorageResource, TenantResource

EVALUATION_GROUP = "evaluation"
EVALUATION_KEY = dg.AssetKey([EVALUATION_GROUP, "evaluation_report"])
REPORT_FILE = "evaluation.json"
EVALUATION_TAG = "facilflow.evaluation"
USE_CASE = current_use_case()


@dg.asset(
    key=EVALUATION_KEY,
    group_name=EVALUATION_GROUP,
    kinds={"mlflow", "lightgbm"},
    deps=[TRAINED_MODEL_KEY],
    description="The candidate and the baseline (the Production version, else the "
    f"{USE_CASE.baseline.name}) scored on the holdout months, with plots, logged to the "
    "candidate's run.",
)
def evaluation_report(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    storage: StorageResource,
    mlflow: MlflowResource,
    tenant: TenantResource,
) -> dg.MaterializeResult:
    candidate_path = storage.models_dir / "candidate.json"
    if config.candidate_run_id:
        with mlflow.fluent():
            candidate = Candidate.from_run(mlflow.client(), config.candidate_run_id)
        candidate.write(candidate_path)
    candidate = Candidate.read(candidate_path)
    frame = read_training_set(storage.training_set_path(candidate.feature_service))
    holdout = frame.filter(pl.col(TIME_COLUMN) >= parse_utc(candidate.holdout_start))
    train = train_slice(
        frame, parse_utc(candidate.train_start), parse_utc(candidate.validation_start)
    )
    labels = holdout[USE_CASE.label].cast(pl.Int8).to_numpy()
    with mlflow.fluent(), tempfile.TemporaryDirectory() as scratch:
        files = Path(
            mlflow_artifacts.download_artifacts(artifact_uri=candidate.model_uri, dst_path=scratch)
        )
        model_digest = directory_digest(files)  # the files scored are the files approved
        booster = mlflow_lightgbm.load_model(str(files))
        scores = booster.predict(feature_matrix(holdout, candidate.feature_names))
        baseline = production_baseline(
            mlflow.client(), tenant.registered_model_name, holdout
        ) or historical_rate_baseline(train, holdout, USE_CASE.label, USE_CASE.baseline)
    context.log.info(
        f"scoring {holdout.height:,} holdout {USE_CASE.target.subject}s against {baseline.name}"
    )
    threshold = config.decision_threshold
    candidate_metrics = classification_metrics(labels, scores, threshold)
    baseline_metrics = classification_metrics(labels, baseline.probabilities, threshold)
    auc_lift = candidate_metrics["auc"] / baseline_metrics["auc"] - 1
    thresholds, failures = judge(candidate_metrics, auc_lift, config)
    report = EvaluationReport(
        candidate_run_id=candidate.run_id,
        model_uri=candidate.model_uri,
        baseline=baseline.name,
        baseline_description=baseline.description,
        baseline_version=baseline.model_version,
        holdout_start=candidate.holdout_start,
        holdout_rows=holdout.height,
        candidate_metrics=candidate_metrics,
        baseline_metrics=baseline_metrics,
        auc_lift=auc_lift,
        thresholds=thresholds,
        failures=failures,
        model_digest=model_digest,
    )
    figures = _figures(labels, scores, baseline, booster, threshold)
    with mlflow.fluent(), _reopened_run(candidate.run_id):
        _log_to_run(report, figures)
        log_reference(train, candidate.feature_names, scores)
    report.write(storage.models_dir / REPORT_FILE)
    url = mlflow.run_url(candidate.experiment_id, candidate.run_id)
    return dg.MaterializeResult(
        metadata={
            "passed": report.passed,
            "failures": dg.MetadataValue.json(failures),
            "auc": candidate_metrics["auc"],
            "baseline": baseline.name,
            "baseline_auc": baseline_metrics["auc"],
            "auc_lift": auc_lift,
            "holdout_rows": holdout.height,
            "comparison": dg.MetadataValue.md(markdown_table(report.comparison())),
            **{
                name: dg.MetadataValue.md(plots.markdown_image(image, name))
                for name, image in figures.items()
            },
            "mlflow_run_id": candidate.run_id,
            **({"mlflow_run": dg.MetadataValue.url(url)} if url else {}),
        }
    )


@dg.asset_check(
    asset=EVALUATION_KEY,
    blocking=True,
    description="The candidate clears the configured thresholds, absolute and relative to the "
    "baseline; when it does not, nothing downstream registers it.",
)
def clears_thresholds(storage: StorageResource) -> dg.AssetCheckResult:
    report = EvaluationReport.read(storage.models_dir / REPORT_FILE)
    return dg.AssetCheckResult(
        passed=report.passed,
        description="; ".join(report.failures) or "every threshold cleared",
        metadata={
            "auc": report.candidate_metrics["auc"],
            "auc_lift": report.auc_lift,
            "log_loss": report.candidate_metrics["log_loss"],
            "thresholds": dg.MetadataValue.json(report.thresholds),
        },
    )


def _reopened_run(run_id: str):
    """Reopen a finished run to add to it; it is marked finished again on leaving."""
    return mlflow.start_run(run_id=run_id)


def _figures(labels, scores, baseline: Baseline, booster, threshold) -> dict[str, bytes]:
    both = {"candidate": scores, baseline.name: baseline.probabilities}
    return {
        "roc": plots.png(plots.roc(labels, both)),
        "calibration": plots.png(plots.calibration(labels, both, USE_CASE.label)),
        "confusion_matrix": plots.png(
            plots.confusion(labels, (scores >= threshold).astype(int), threshold, USE_CASE.label)
        ),
        "feature_importance": plots.png(plots.feature_importance(booster)),
    }


def _log_to_run(report: EvaluationReport, figures: dict[str, bytes]) -> None:
    mlflow.log_metrics(
        {
            **{f"holdout_{k}": v for k, v in report.candidate_metrics.items()},
            **{f"baseline_holdout_{k}": v for k, v in report.baseline_metrics.items()},
            "holdout_auc_lift": report.auc_lift,
        }
    )
    mlflow.set_tags(
        {
            EVALUATION_TAG: "passed" if report.passed else "failed",
            f"{EVALUATION_TAG}.model_digest": report.model_digest,
            "facilflow.baseline": report.baseline,
        }
    )
    for name, image in figures.items():
        log_png(image, f"{name}.png", folder="evaluation")
    mlflow.log_text(report.markdown(), "evaluation/report.md")
    mlflow.log_dict({**report.__dict__, "passed": report.passed}, "evaluation/report.json")
