"""The classification metrics, computed with NumPy, equal scikit-learn's on scores with
ties, on a single class and at thresholds no row reaches."""

import numpy as np
import pytest
from sklearn import metrics as sk

from facilflow_assets.evaluation.metrics import classification_metrics


def _sklearn(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    decided = (scores >= threshold).astype(int)
    both = len(np.unique(labels)) == 2
    return {
        "auc": sk.roc_auc_score(labels, scores) if both else float("nan"),
        "accuracy": sk.accuracy_score(labels, decided),
        "f1": sk.f1_score(labels, decided, zero_division=0),
        "precision": sk.precision_score(labels, decided, zero_division=0),
        "recall": sk.recall_score(labels, decided, zero_division=0),
        "log_loss": sk.log_loss(labels, np.clip(scores, 1e-7, 1 - 1e-7), labels=[0, 1]),
        "brier": sk.brier_score_loss(labels, scores, pos_label=1),
    }


@pytest.mark.parametrize(
    ("rows", "levels", "threshold", "positive_rate"),
    [(5_000, None, 0.5, 0.3), (3_000, 10, 0.5, 0.2), (200, None, 0.99, 0.5), (50, 4, 0.5, 0.0)],
)
def test_the_metrics_equal_scikit_learns(rows, levels, threshold, positive_rate):
    generator = np.random.default_rng(rows)
    scores = generator.random(rows)
    if levels:  # ties
        scores = np.round(scores * levels) / levels
    labels = (generator.random(rows) < scores * 2 * positive_rate).astype(int)
    ours = classification_metrics(labels, scores, threshold)
    for name, expected in _sklearn(labels, scores, threshold).items():
        assert ours[name] == pytest.approx(expected, abs=1e-12, nan_ok=True), name
