"""Holdout metrics of a model, by task, and which one decides against the baseline."""

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)

TOP_SHARE = 0.1  # lift is measured in the riskiest tenth of rows


def classification_metrics(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float
) -> dict[str, float]:
    """AUC, accuracy and F1 at `threshold`, log loss, and the lift in the top tenth: the
    positive rate among the rows scored riskiest over the overall positive rate."""
    predicted = (probabilities >= threshold).astype(int)
    top = np.argsort(-probabilities, kind="stable")[: max(1, int(len(labels) * TOP_SHARE))]
    return {
        "auc": float(roc_auc_score(labels, probabilities)),
        "accuracy": float(accuracy_score(labels, predicted)),
        "f1": float(f1_score(labels, predicted, zero_division=0)),  # pyright: ignore[reportArgumentType]  # sklearn: unannotated, inferred from "warn"
        "log_loss": float(log_loss(labels, np.clip(probabilities, 1e-7, 1 - 1e-7))),
        "top_decile_lift": float(labels[top].mean() / labels.mean()),
    }


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
