"""The decision threshold of a binary model version: the use case's fixed one, or the one
its rule picks on the validation months (never on the holdout, which judges the version).

A row is positive when its probability is at or above the threshold. The rules look at
every distinct score of the validation rows as a threshold.
"""

from dataclasses import dataclass

import numpy as np

from facilflow_assets.use_case import DecisionSpec

DECISION_THRESHOLD_TAG = "facilflow.decision_threshold"  # on a registered version
DECISION_THRESHOLD_METRIC = "decision_threshold"  # on its training run


@dataclass(frozen=True)
class Decision:
    threshold: float
    how: str  # in words, for the report: "best F1 (0.41) on the validation months"
    problem: str | None = None  # the rule's target cannot be met: the version is refused


def pick_threshold(spec: DecisionSpec, labels: np.ndarray, scores: np.ndarray) -> Decision:
    """The threshold `spec` gives for the validation rows' `labels` (0/1) and `scores`."""
    if spec.threshold is not None:
        return Decision(spec.threshold, f"fixed at {spec.threshold}")
    curve = _precision_recall(labels.astype(bool), scores)
    if curve is None:
        problem = "the validation months have no positive row to pick a threshold on"
        return Decision(0.5, f"{spec.rule}, not applicable", problem)
    thresholds, precision, recall = curve
    if spec.rule == "best_f1":
        f1 = np.divide(
            2 * precision * recall,
            precision + recall,
            out=np.zeros_like(precision),
            where=precision + recall > 0,
        )
        best = int(np.argmax(f1))
        return Decision(float(thresholds[best]), f"best F1 ({f1[best]:.3f}) on validation")
    target = spec.target or 0.0
    reached, kind = (
        (precision >= target, "precision")
        if spec.rule == "target_precision"
        else (recall >= target, "recall")
    )
    if not reached.any():
        best = precision.max() if kind == "precision" else recall.max()
        problem = f"no threshold reaches {kind} {target} on validation (at best {best:.3f})"
        return Decision(float(thresholds[0]), f"{spec.rule} {target}, not met", problem)
    # Precision's target: the lowest threshold reaching it, for the most recall; recall's:
    # the highest, for the most precision (recall only grows as the threshold falls).
    chosen = np.flatnonzero(reached)[-1 if kind == "precision" else 0]
    other = recall if kind == "precision" else precision
    other_kind = "recall" if kind == "precision" else "precision"
    return Decision(
        float(thresholds[chosen]),
        f"{kind} {target} on validation, {other_kind} {other[chosen]:.3f}",
    )


def _precision_recall(labels: np.ndarray, scores: np.ndarray):
    """Each distinct score from the highest, with the precision and recall of calling the
    rows at or above it positive; None without a positive row."""
    positives = int(labels.sum())
    if positives == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], labels[order]
    last_of_tie = np.r_[ranked[1:] != ranked[:-1], True]
    true_positives = np.cumsum(hits)[last_of_tie]
    called = np.flatnonzero(last_of_tie) + 1
    return ranked[last_of_tie], true_positives / called, true_positives / positives
