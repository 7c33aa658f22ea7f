"""Holdout metrics of a model, by task, and which one decides against the baseline."""

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

TOP_SHARE = 0.1  # lift is measured in the riskiest tenth of rows
CALIBRATION_BINS = 10


def classification_metrics(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float
) -> dict[str, float]:
    """AUC; accuracy, F1, precision and recall at `threshold`; log loss, Brier score and
    calibration error; and the lift in the top tenth: the positive rate among the rows
    scored riskiest over the overall positive rate. AUC needs both classes (else NaN).

    Computed with NumPy to scikit-learn's definitions (the tests hold them equal): its
    input validation costs about 30 ms a call, paid once per day and version by a year of
    daily quality."""
    positive = labels.astype(int) == 1
    predicted = probabilities >= threshold
    true_pos = int((predicted & positive).sum())
    false_pos = int((predicted & ~positive).sum())
    false_neg = int((~predicted & positive).sum())
    clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
    top = np.argsort(-probabilities, kind="stable")[: max(1, int(len(labels) * TOP_SHARE))]
    rate = positive.mean()
    return {
        "auc": auc(positive, probabilities),
        "accuracy": float((predicted == positive).mean()),
        "f1": _ratio(2 * true_pos, 2 * true_pos + false_pos + false_neg),
        "precision": _ratio(true_pos, true_pos + false_pos),
        "recall": _ratio(true_pos, true_pos + false_neg),
        "log_loss": float(-np.where(positive, np.log(clipped), np.log(1 - clipped)).mean()),
        "brier": float(np.mean((probabilities - positive) ** 2)),
        "calibration_error": calibration_error(labels, probabilities),
        "top_decile_lift": float(positive[top].mean() / rate) if rate > 0 else float("nan"),
    }


def auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """The area under the ROC curve as the Mann-Whitney statistic: the chance a positive
    outranks a negative, ties counting half; NaN without both classes."""
    positives = int(positive.sum())
    negatives = len(positive) - positives
    if not positives or not negatives:
        return float("nan")
    ranks = rankdata(scores)  # tied scores share their average rank
    return float(
        (ranks[positive].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    )


def _ratio(numerator: int, denominator: int) -> float:
    """scikit-learn's `zero_division=0`: an undefined ratio is 0."""
    return numerator / denominator if denominator else 0.0


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
