"""The decision threshold a use case's `decision` gives on the validation months: fixed,
the best F1, or the most recall (precision) at a target precision (recall), each checked
against scikit-learn's precision-recall curve on the same scores."""

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_recall_curve, precision_score, recall_score

from facilflow_assets.evaluation.decision import pick_threshold
from facilflow_assets.use_case import DecisionSpec

RNG = np.random.default_rng(11)
LABELS = (RNG.random(4000) < 0.12).astype(int)  # rare positives, as a late-flight label
SCORES = np.clip(0.08 + 0.25 * LABELS + RNG.normal(0, 0.15, LABELS.size), 0.001, 0.999)
SCORES = np.round(SCORES, 3)  # ties, as a model's scores have


def _curve():
    precision, recall, thresholds = precision_recall_curve(LABELS, SCORES)
    return precision[:-1], recall[:-1], thresholds


def test_a_fixed_threshold_is_the_threshold():
    assert pick_threshold(DecisionSpec(threshold=0.3), LABELS, SCORES).threshold == 0.3


def test_best_f1_is_the_highest_f1_of_any_threshold():
    decision = pick_threshold(DecisionSpec(rule="best_f1"), LABELS, SCORES)
    precision, recall, thresholds = _curve()
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    assert decision.threshold == pytest.approx(thresholds[np.argmax(f1)])
    decided = SCORES >= decision.threshold
    assert f1_score(LABELS, decided) == pytest.approx(f1.max())
    assert f1_score(LABELS, decided) > f1_score(LABELS, SCORES >= 0.5)  # 0.5 misses most
    assert decision.problem is None and "best F1" in decision.how


def test_a_target_precision_gives_the_most_recall_that_reaches_it():
    decision = pick_threshold(DecisionSpec(rule="target_precision", target=0.6), LABELS, SCORES)
    precision, recall, thresholds = _curve()
    reaching = precision >= 0.6
    assert decision.threshold == pytest.approx(thresholds[reaching][np.argmax(recall[reaching])])
    decided = SCORES >= decision.threshold
    assert precision_score(LABELS, decided) >= 0.6
    assert recall_score(LABELS, decided) == pytest.approx(recall[reaching].max())


def test_a_target_recall_gives_the_most_precision_that_reaches_it():
    decision = pick_threshold(DecisionSpec(rule="target_recall", target=0.8), LABELS, SCORES)
    decided = SCORES >= decision.threshold
    assert recall_score(LABELS, decided) >= 0.8
    precision, recall, thresholds = _curve()
    assert precision_score(LABELS, decided) == pytest.approx(precision[recall >= 0.8].max())


def test_a_target_no_threshold_reaches_is_a_problem_that_refuses_the_version():
    uninformative = np.full(LABELS.size, 0.3)  # one score: precision is the positive share
    rule = DecisionSpec(rule="target_precision", target=0.5)
    decision = pick_threshold(rule, LABELS, uninformative)
    assert decision.problem == (
        f"no threshold reaches precision 0.5 on validation (at best {LABELS.mean():.3f})"
    )
    none_positive = pick_threshold(DecisionSpec(rule="best_f1"), LABELS * 0, SCORES)
    assert (
        none_positive.problem == "the validation months have no positive row to pick a threshold on"
    )


@pytest.mark.parametrize(
    "fields,expected",
    [
        ({}, "give one of 'threshold' and 'rule'"),
        ({"threshold": 0.3, "rule": "best_f1"}, "give one of 'threshold' and 'rule'"),
        ({"rule": "target_precision"}, "'target' goes with the rules target_precision"),
        ({"rule": "best_f1", "target": 0.5}, "'target' goes with the rules target_precision"),
    ],
)
def test_a_decision_says_one_thing(fields, expected):
    with pytest.raises(ValueError, match=expected):
        DecisionSpec(**fields)
