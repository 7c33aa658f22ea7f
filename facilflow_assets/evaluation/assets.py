"""The evaluation-report asset and the blocking check that gates registration."""

import tempfile
from pathlib import Path

import dagster as dg
import mlflow
import mlflow.artifacts as mlflow_artifacts
import polars as pl

from facilflow_assets import plots
from facilflow_assets.asset_keys import EVALUATION_GROUP, UseCaseKeys
from facilflow_assets.drift.reference import log_reference
from facilflow_assets.evaluation.baseline import (
    Baseline,
    historical_mean_baseline,
    load_booster,
    production_baseline,
)
from facilflow_assets.evaluation.calibration import CALIBRATION_ARTIFACT, fit_calibration
from facilflow_assets.evaluation.decision import (
    DECISION_THRESHOLD_METRIC,
    Decision,
    pick_threshold,
)
from facilflow_assets.evaluation.metrics import SCORING
from facilflow_assets.evaluation.report import EvaluationConfig, EvaluationReport, judge
from facilflow_assets.features.feast_assets import features_on_rows
from facilflow_assets.governance.digest import directory_digest
from facilflow_assets.metadata import markdown_table
from facilflow_assets.scope import ModelScope
from facilflow_assets.training.boosting import frame_predictions
from facilflow_assets.training.candidate import CANDIDATE_FILE, Candidate
from facilflow_assets.training.config import parse_utc
from facilflow_assets.training.dataset import (
    TIME_COLUMN,
    read_training_set,
    train_slice,
)
from facilflow_assets.training.tracking import log_png
from facilflow_assets.use_case import UseCase
from resources import FeastResource, MlflowResource, StorageResource

REPORT_FILE = "evaluation.json"
EVALUATION_TAG = "facilflow.evaluation"


def build_evaluation_assets(
    use_case: UseCase, scope: ModelScope
) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    """The use case's evaluation report, and the blocking check that gates registration."""
    keys = UseCaseKeys(scope)

    @dg.asset(
        key=keys.evaluation_report,
        group_name=EVALUATION_GROUP,
        kinds={"mlflow", "lightgbm"},
        deps=[keys.trained_model],
        description="The candidate and the baseline (the Production version, else the "
        f"{use_case.baseline.name}) scored on the holdout months, with plots, logged to the "
        "candidate's run.",
    )
    def evaluation_report(
        context: dg.AssetExecutionContext,
        config: EvaluationConfig,
        storage: StorageResource,
        mlflow: MlflowResource,
        feast: FeastResource,
    ) -> dg.MaterializeResult:
        return evaluate(context, config, use_case, scope, storage, mlflow, feast)

    @dg.asset_check(
        asset=keys.evaluation_report,
        name="clears_thresholds",
        blocking=True,
        description="The candidate clears the configured thresholds, absolute and relative to "
        "the baseline; when it does not, nothing downstream registers it.",
    )
    def clears_thresholds(storage: StorageResource) -> dg.AssetCheckResult:
        report = EvaluationReport.read(storage.files(scope).models_dir / REPORT_FILE)
        primary = report.primary_metric
        return dg.AssetCheckResult(
            passed=report.passed,
            description="; ".join(report.failures) or "every threshold cleared",
            metadata={
                **report.candidate_metrics,
                f"{primary}_lift": report.lift,
                "thresholds": dg.MetadataValue.json(report.thresholds),
            },
        )

    return [evaluation_report], [clears_thresholds]


def evaluate(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    use_case: UseCase,
    scope: ModelScope,
    storage: StorageResource,
    tracking: MlflowResource,
    feast: FeastResource,
) -> dg.MaterializeResult:
    """Score the use case's candidate and its baseline on the holdout; log it all."""
    files = storage.files(scope)
    candidate_path = files.models_dir / CANDIDATE_FILE
    if config.candidate_run_id:
        with tracking.fluent():
            candidate = Candidate.from_run(tracking.client(), config.candidate_run_id)
        candidate.write(candidate_path)
    candidate = Candidate.read(candidate_path)
    frame = read_training_set(files.training_set_path(candidate.feature_service))
    holdout = frame.filter(pl.col(TIME_COLUMN) >= parse_utc(candidate.holdout_start))
    train = train_slice(
        frame, parse_utc(candidate.train_start), parse_utc(candidate.validation_start)
    )
    labels = holdout[use_case.label].cast(pl.Float64).to_numpy()

    def features_of(service: str) -> pl.DataFrame:
        if service == candidate.feature_service:
            return holdout
        context.log.info(f"the Production version reads {service}: its features, same rows")
        return features_on_rows(feast.feature_store(scope), service, holdout, use_case.target.keys)

    with tracking.fluent(), tempfile.TemporaryDirectory() as scratch:
        model_files = Path(
            mlflow_artifacts.download_artifacts(artifact_uri=candidate.model_uri, dst_path=scratch)
        )
        model_digest = directory_digest(model_files)  # the files scored are the files approved
        booster = load_booster(str(model_files))
        scores = frame_predictions(booster, holdout)
        baseline = production_baseline(
            tracking.client(), scope.registered_model_name, holdout, features_of
        ) or historical_mean_baseline(train, holdout, use_case.label, use_case.baseline)
    context.log.info(
        f"scoring {holdout.height:,} holdout {use_case.target.subject}s against {baseline.name}"
    )
    scoring = SCORING[use_case.task]
    decision = None
    if use_case.task == "binary":
        decision = _decision(use_case, candidate, frame, booster)
        context.log.info(f"decision threshold {decision.threshold:.4f}: {decision.how}")
    threshold = decision.threshold if decision else 0.5
    candidate_metrics = scoring.metrics(labels, scores, threshold)
    baseline_metrics = scoring.metrics(labels, baseline.predictions, threshold)
    primary = scoring.primary
    lift = scoring.lift(candidate_metrics, baseline_metrics)
    thresholds, failures = judge(candidate_metrics, primary, lift, config.gates(use_case.gates))
    if decision and decision.problem:
        failures.append(f"decision: {decision.problem}")
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
        primary_metric=primary,
        lift=lift,
        thresholds=thresholds,
        failures=failures,
        model_digest=model_digest,
        decision_threshold=decision.threshold if decision else None,
        decision=decision.how if decision else "",
    )
    figures = _figures(use_case, labels, scores, baseline, booster, threshold)
    with tracking.fluent(), _reopened_run(candidate.run_id):
        _log_to_run(report, figures)
        if use_case.task == "binary":  # for estimating a day's quality before its outcomes
            mlflow.log_dict(fit_calibration(labels, scores).to_dict(), CALIBRATION_ARTIFACT)
        log_reference(train, candidate.feature_names, scores)
    report.write(files.models_dir / REPORT_FILE)
    url = tracking.run_url(candidate.experiment_id, candidate.run_id)
    return dg.MaterializeResult(
        metadata={
            "passed": report.passed,
            "failures": dg.MetadataValue.json(failures),
            primary: candidate_metrics[primary],
            "baseline": baseline.name,
            f"baseline_{primary}": baseline_metrics[primary],
            f"{primary}_lift": lift,
            "holdout_rows": holdout.height,
            **({"decision_threshold": decision.threshold} if decision else {}),
            "comparison": dg.MetadataValue.md(markdown_table(report.comparison())),
            **{
                name: dg.MetadataValue.md(plots.markdown_image(image, name))
                for name, image in figures.items()
            },
            "mlflow_run_id": candidate.run_id,
            **({"mlflow_run": dg.MetadataValue.url(url)} if url else {}),
        }
    )


def _decision(use_case: UseCase, candidate: Candidate, frame: pl.DataFrame, booster) -> Decision:
    """The threshold the use case's decision gives, picked on the validation months."""
    validation = train_slice(
        frame, parse_utc(candidate.validation_start), parse_utc(candidate.holdout_start)
    )
    scores = frame_predictions(booster, validation)
    labels = validation[use_case.label].cast(pl.Int8).to_numpy()
    return pick_threshold(use_case.decision, labels, scores)


def _reopened_run(run_id: str):
    """Reopen a finished run to add to it; it is marked finished again on leaving."""
    return mlflow.start_run(run_id=run_id)


def _figures(
    use_case: UseCase, labels, scores, baseline: Baseline, booster, threshold: float
) -> dict[str, bytes]:
    both = {"candidate": scores, baseline.name: baseline.predictions}
    label = use_case.label
    if use_case.task == "regression":
        figures = {
            "predicted_vs_actual": plots.predicted_vs_actual(labels, both, label),
            "residuals": plots.residuals(labels, both, label),
        }
    else:
        predicted = (scores >= threshold).astype(int)
        figures = {
            "roc": plots.roc(labels, both),
            "calibration": plots.calibration(labels, both, label),
            "confusion_matrix": plots.confusion(labels, predicted, threshold, label),
        }
    figures["feature_importance"] = plots.feature_importance(booster)
    return {name: plots.png(figure) for name, figure in figures.items()}


def _log_to_run(report: EvaluationReport, figures: dict[str, bytes]) -> None:
    mlflow.log_metrics(
        {
            **{f"holdout_{k}": v for k, v in report.candidate_metrics.items()},
            **{f"baseline_holdout_{k}": v for k, v in report.baseline_metrics.items()},
            f"holdout_{report.primary_metric}_lift": report.lift,
            **(
                {}
                if report.decision_threshold is None
                else {DECISION_THRESHOLD_METRIC: report.decision_threshold}
            ),
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
