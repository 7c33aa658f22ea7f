"""Estimated quality from calibrated scores alone: the expected ROC area is the realized
one when the outcomes are certain, tracks the realized one on sampled outcomes as the
day's mix of rows shifts, and a calibration read back is checked."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from facilflow_assets.evaluation.calibration import Calibration, fit_calibration
from facilflow_assets.monitoring.estimated_quality import expected_auc, expected_metrics


def test_with_certain_outcomes_the_expected_auc_is_the_realized_one_ties_included():
    generator = np.random.default_rng(3)
    scores = generator.integers(0, 20, 2_000) / 20  # many ties
    labels = (generator.random(2_000) < scores).astype(float)
    assert expected_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_the_estimate_tracks_realized_auc_and_accuracy_as_the_days_mix_shifts():
    """Scores whose true positive rate is a fixed curve of the score (the model's relation
    to the outcome holds); days differ in how many confident rows they hold."""
    generator = np.random.default_rng(11)

    def truth(scores):  # miscalibrated on purpose: the calibration must correct it
        return np.clip(scores**1.5, 0, 1)

    holdout = generator.beta(2, 5, 50_000)
    calibration = fit_calibration((generator.random(holdout.size) < truth(holdout)), holdout)
    gaps, realized_aucs, estimated_aucs = [], [], []
    for day in range(30):
        scores = generator.beta(2 + day / 6, 5, 3_000)  # riskier rows as the month goes on
        labels = (generator.random(scores.size) < truth(scores)).astype(float)
        estimate = expected_metrics(scores, calibration, 0.5)
        realized_aucs.append(roc_auc_score(labels, scores))
        estimated_aucs.append(estimate["auc"])
        gaps.append(abs(estimate["accuracy"] - ((scores >= 0.5) == labels).mean()))
    assert np.mean(np.abs(np.subtract(estimated_aucs, realized_aucs))) < 0.015
    assert np.corrcoef(estimated_aucs, realized_aucs)[0, 1] > 0.8
    assert np.mean(gaps) < 0.01


def test_an_estimate_needs_both_classes_expected_and_rows():
    always = Calibration([0.0, 1.0], [1.0, 1.0])  # every row a positive: no ROC curve
    assert np.isnan(expected_metrics(np.array([0.2, 0.9]), always, 0.5)["auc"])
    assert np.isnan(expected_metrics(np.array([]), always, 0.5)["accuracy"])


def test_a_calibration_read_back_must_be_increasing_and_complete():
    curve = fit_calibration(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    assert Calibration.from_dict(curve.to_dict()) == curve
    with pytest.raises(ValueError, match="increasing"):
        Calibration.from_dict({"scores": [0.5, 0.1], "probabilities": [0.2, 0.3]})
    with pytest.raises(ValueError, match="as many"):
        Calibration.from_dict({"scores": [0.1], "probabilities": []})
