"""Holdout metrics of a delay classifier."""

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

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
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "log_loss": float(log_loss(labels, np.clip(probabilities, 1e-7, 1 - 1e-7))),
        "top_decile_lift": float(labels[top].mean() / labels.mean()),
    }
