"""The hyperparameter search a use case file or a training run declares: which LightGBM
parameters vary, over which ranges, checked when the file or the run config is read."""

import difflib

import dagster as dg
from pydantic import Field, model_validator

# LightGBM parameters a search may vary; anything else is a typo or belongs elsewhere.
TUNABLE_HYPERPARAMETERS = {
    "learning_rate": float,
    "num_leaves": int,
    "max_depth": int,
    "min_data_in_leaf": int,
    "min_sum_hessian_in_leaf": float,
    "feature_fraction": float,
    "bagging_fraction": float,
    "bagging_freq": int,
    "lambda_l1": float,
    "lambda_l2": float,
    "min_gain_to_split": float,
    "scale_pos_weight": float,
}
DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")


class SearchDimension(dg.Config):
    """One hyperparameter's range: `uniform`/`loguniform`/`randint` over [low, high], or a
    `choice` among `values`."""

    distribution: str = Field(description=f"One of {', '.join(DISTRIBUTIONS)}.")
    low: float | None = None
    high: float | None = None
    values: list[float] | None = None

    @model_validator(mode="after")
    def _bounds_fit_the_distribution(self) -> "SearchDimension":
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"distribution {self.distribution!r} is not one of {', '.join(DISTRIBUTIONS)}"
            )
        if self.distribution == "choice":
            if not self.values:
                raise ValueError("a 'choice' dimension needs a non-empty 'values' list")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"a {self.distribution!r} dimension needs low < high")
        elif self.distribution == "loguniform" and self.low <= 0:
            raise ValueError("a 'loguniform' dimension needs low > 0")
        return self


DEFAULT_SEARCH_SPACE = {
    "learning_rate": {"distribution": "loguniform", "low": 0.02, "high": 0.3},
    "num_leaves": {"distribution": "randint", "low": 15, "high": 127},
    "min_data_in_leaf": {"distribution": "randint", "low": 20, "high": 400},
    "feature_fraction": {"distribution": "uniform", "low": 0.5, "high": 1.0},
    "lambda_l2": {"distribution": "loguniform", "low": 0.001, "high": 10.0},
}


def check_search_space(space: dict) -> dict:
    """`space` if it names at least one hyperparameter and only tunable ones."""
    if not space:
        raise ValueError("search_space is empty; name at least one hyperparameter to tune")
    for name in space:
        if name not in TUNABLE_HYPERPARAMETERS:
            close = difflib.get_close_matches(name, TUNABLE_HYPERPARAMETERS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(
                f"search_space: unknown hyperparameter '{name}'{hint}; tunable ones are "
                + ", ".join(TUNABLE_HYPERPARAMETERS)
            )
    return space


def check_budget(max_rounds: int, grace_rounds: int) -> None:
    if grace_rounds > max_rounds:
        raise ValueError(f"grace_rounds ({grace_rounds}) must not exceed max_rounds ({max_rounds})")
