"""Estimated quality before the outcomes arrive: confidence-based performance estimation.

When a score is calibrated, a row scored 0.3 is a positive three times in ten. Summed over
a day's rows, the calibrated scores give the expected true and false positives at every
threshold, so the expected ROC curve and its area, and the expected accuracy at the
decision threshold, without one outcome (NannyML calls it CBPE). The ranking is the raw
score's; the calibration, an isotonic curve fitted on the version's holdout, only says how
often each score turns out positive. The estimate holds while the relation between score
and outcome stays as on the holdout: it sees a shift in what is scored (more uncertain
rows, fewer confident ones), not a model that has become wrong on rows like the old ones;
realized quality does, once the outcomes land.
"""

import numpy as np

from facilflow_assets.evaluation.calibration import Calibration


def expected_metrics(
    scores: np.ndarray, calibration: Calibration, threshold: float
) -> dict[str, float]:
    """The expected AUC and accuracy (at `threshold`, on the raw score) of a day's scores,
    and the expected positive rate; AUC is NaN when no positive or no negative is expected."""
    if not len(scores):
        nan = float("nan")
        return {"auc": nan, "accuracy": nan, "positive_rate": nan}
    probabilities = calibration.apply(scores)
    return {
        "auc": expected_auc(scores, probabilities),
        "accuracy": float(np.where(scores >= threshold, probabilities, 1 - probabilities).mean()),
        "positive_rate": float(probabilities.mean()),
    }


def expected_auc(scores: np.ndarray, probabilities: np.ndarray) -> float:
    """The area under the expected ROC curve: thresholds at each distinct score, highest
    first, each row counting `probability` as a positive and the rest as a negative (tied
    scores move the curve together, as in a realized ROC curve)."""
    order = np.argsort(-scores, kind="stable")
    ranked, expected = scores[order], probabilities[order]
    true_positives, false_positives = np.cumsum(expected), np.cumsum(1 - expected)
    positives, negatives = true_positives[-1], false_positives[-1]
    if positives <= 0 or negatives <= 0:
        return float("nan")
    last_of_tie = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    tpr = np.r_[0.0, true_positives[last_of_tie] / positives]
    fpr = np.r_[0.0, false_positives[last_of_tie] / negatives]
    return float(np.trapezoid(tpr, fpr))
