"""What a use case's task makes LightGBM learn, and which validation metric decides.

A binary task learns the probability of a 0/1 label (AUC is maximised, log loss watched);
a regression learns an amount (RMSE is minimised, MAE watched). The search, early
stopping and the final fit all read the same objective.
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class Objective:
    task: str
    lightgbm: dict[str, object]  # LightGBM's objective and the metrics it reports per round
    round_metrics: dict[str, str]  # LightGBM's metric name -> the name runs and Tune use
    target: str  # the round metric the search and the choice of round optimise
    mode: Literal["max", "min"]

    def params(self) -> dict[str, object]:
        return {**self.lightgbm, "metric": list(self.round_metrics), "verbose": -1}

    def best_round(self, values: list[float]) -> int:
        """The 1-based round whose `target` value is best."""
        pick = np.argmax if self.mode == "max" else np.argmin
        return int(pick(values)) + 1

    def best(self, values: list[float]) -> float:
        return max(values) if self.mode == "max" else min(values)

    def ranks_above(self, a: float, b: float) -> bool:
        """Whether a target value `a` is better than `b`."""
        return a > b if self.mode == "max" else a < b


OBJECTIVES = {
    "binary": Objective(
        task="binary",
        lightgbm={"objective": "binary"},
        round_metrics={"auc": "valid_auc", "binary_logloss": "valid_logloss"},
        target="valid_auc",
        mode="max",
    ),
    "regression": Objective(
        task="regression",
        lightgbm={"objective": "regression"},
        round_metrics={"rmse": "valid_rmse", "l1": "valid_mae"},
        target="valid_rmse",
        mode="min",
    ),
}
