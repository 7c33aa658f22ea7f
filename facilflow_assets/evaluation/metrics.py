"""Holdout metrics of a model, by task, and which one decides against the baseline."""

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    mean_absolute_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)

TOP_SHARE = 0.1  # lift is measured in the riskiest tenth of rows
CALIBRATION_BINS = 10


def classification_metrics(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float
) -> dict[str, float]:
    """AUC; accuracy, F1, precision and recall at `threshold`; log loss, Brier score and
    calibration error; and the lift in the top tenth: the positive rate among the rows
    scored riskiest over the overall positive rate. AUC needs both classes (else NaN)."""
    predicted = (probabilities >= threshold).astype(int)
    top = np.argsort(-probabilities, kind="stable")[: max(1, int(len(labels) * TOP_SHARE))]
    both_classes = len(np.unique(labels)) == 2
    return {
        "auc": float(roc_auc_score(labels, probabilities)) if both_classes else float("nan"),
        "accuracy": float(accuracy_score(labels, predicted)),
        "f1": float(f1_score(labels, predicted, zero_division=0)),  # pyright: ignore[reportArgumentType]  # sklearn: unannotated, inferred from "warn"
        "precision": float(precision_score(labels, predicted, zero_division=0)),  # pyright: ignore[reportArgumentType]
        "recall": float(recall_score(labels, predicted, zero_division=0)),  # pyright: ignore[reportArgumentType]
        "log_loss": float(log_loss(labels, np.clip(probabilities, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "brier": float(brier_score_loss(labels, probabilities, pos_label=1)),
        "calibration_error": calibration_error(labels, probabilities),
        "top_decile_lift": float(labels[top].mean() / labels.mean())
        if labels.mean() > 0
        else float("nan"),
    }


def calibration_error(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Expected calibration error: over ten equal-width bins of the probability, the gap
    between the mean probability and the positive rate, weighted by the bin's rows."""
    bins = np.minimum((probabilities * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    error = 0.0
    for b in np.unique(bins):
        inside = bins == b
        error += abs(probabilities[inside].mean() - labels[inside].mean()) * inside.mean()
    return float(error)


def regression_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, bias (mean of predicted minus actual: positive overestimates) and R²."""
    return {
        "rmse": float(root_mean_squared_error(actual, predicted)),
        "mae": float(mean_absolute_error(actual, predicted)),
        "bias": float(np.mean(predicted - actual)),
        "r2": float(r2_score(actual, predicted)),
    }


@dataclass(frozen=True)
class Scoring:
    """How a task's holdout is scored: its metrics and the one that decides."""

    primary: str  # the metric a candidate is judged on against the baseline
    higher_is_better: bool

    def metrics(self, labels: np.ndarray, predictions: np.ndarray, threshold: float):
        if self.primary == "auc":
            return classification_metrics(labels.astype(int), predictions, threshold)
        return regression_metrics(labels, predictions)

    def lift(self, candidate: dict[str, float], baseline: dict[str, float]) -> float:
        """The candidate's relative gain on the primary metric (0.02: 2% better)."""
        ratio = candidate[self.primary] / baseline[self.primary]
        return ratio - 1 if self.higher_is_better else 1 - ratio


SCORING = {
    "binary": Scoring(primary="auc", higher_is_better=True),
    "regression": Scoring(primary="rmse", higher_is_better=False),
}
