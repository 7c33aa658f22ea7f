"""A version's calibration: how often each score turned out positive on its holdout.

Logged with the evaluation, so monitoring can estimate a day's quality from its scores
before the outcomes arrive (monitoring/estimated_quality.py).
"""

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient
from sklearn.isotonic import IsotonicRegression

CALIBRATION_ARTIFACT = "evaluation/calibration.json"


@dataclass(frozen=True)
class Calibration:
    """A monotone map from a version's score to how often it was positive on its holdout:
    linear between the knots, flat beyond them."""

    scores: list[float]
    probabilities: list[float]

    def apply(self, scores: np.ndarray) -> np.ndarray:
        return np.interp(scores, self.scores, self.probabilities)

    def to_dict(self) -> dict[str, list[float]]:
        return {"scores": self.scores, "probabilities": self.probabilities}

    @classmethod
    def from_dict(cls, fields: dict) -> "Calibration":
        scores, probabilities = fields["scores"], fields["probabilities"]
        if len(scores) != len(probabilities) or not scores:
            raise ValueError("a calibration needs as many probabilities as scores, at least one")
        if list(scores) != sorted(scores):
            raise ValueError("a calibration's scores must be increasing")
        return cls([float(s) for s in scores], [float(p) for p in probabilities])


def fit_calibration(labels: np.ndarray, scores: np.ndarray) -> Calibration:
    """The isotonic curve of 0/1 `labels` on `scores` (the holdout's)."""
    curve = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    curve.fit(scores.astype(np.float64), labels.astype(np.float64))
    return Calibration(
        [float(s) for s in curve.X_thresholds_], [float(p) for p in curve.y_thresholds_]
    )


def logged_calibration(client: MlflowClient, run_id: str) -> Calibration | None:
    """The calibration the evaluation logged to a version's training run; None for a
    regression, or a version evaluated before calibrations were recorded."""
    folder = str(Path(CALIBRATION_ARTIFACT).parent)
    if CALIBRATION_ARTIFACT not in {a.path for a in client.list_artifacts(run_id, folder)}:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        path = client.download_artifacts(run_id, CALIBRATION_ARTIFACT, scratch)
        return Calibration.from_dict(json.loads(Path(path).read_text()))
