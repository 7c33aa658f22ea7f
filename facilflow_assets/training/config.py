"""The use case's training settings: time splits, the search space and the trial budget."""

import difflib
from datetime import UTC, datetime

import dagster as dg
from pydantic import Field, field_validator, model_validator
from ray import tune

from facilflow_assets.use_case import UseCase

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

    def to_tune(self, kind: type):
        """This dimension as a Ray Tune search domain."""
        if self.distribution == "choice":
            if not self.values:
                raise ValueError("a 'choice' dimension needs a non-empty 'values' list")
            return tune.choice([kind(v) for v in self.values])
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.distribution!r} dimension needs low < high")
        if self.distribution == "randint":
            # Tune's randint excludes the upper bound; the config's `high` is inclusive.
            return tune.randint(int(self.low), int(self.high) + 1)
        return getattr(tune, self.distribution)(self.low, self.high)


DEFAULT_SEARCH_SPACE = {
    "learning_rate": {"distribution": "loguniform", "low": 0.02, "high": 0.3},
    "num_leaves": {"distribution": "randint", "low": 15, "high": 127},
    "min_data_in_leaf": {"distribution": "randint", "low": 20, "high": 400},
    "feature_fraction": {"distribution": "uniform", "low": 0.5, "high": 1.0},
    "lambda_l2": {"distribution": "loguniform", "low": 0.001, "high": 10.0},
}


class TrainingConfig(dg.Config):
    """Rows from `train_start` to `validation_start` train; `validation_start`..`holdout_start`
    guide early stopping and the search; from `holdout_start` on is kept for evaluation alone.
    `training_config_for` gives each use case its class, whose defaults are its `splits`."""

    feature_service: str = Field(description="The Feast feature service whose training set to use.")
    train_start: str = Field(description="UTC date (ISO 8601).")
    validation_start: str = Field(description="UTC date (ISO 8601).")
    holdout_start: str = Field(description="UTC date (ISO 8601).")
    search_space: dict[str, SearchDimension] = Field(
        default=DEFAULT_SEARCH_SPACE,
        validate_default=True,
        description=f"Hyperparameters to tune, among: {', '.join(TUNABLE_HYPERPARAMETERS)}.",
    )
    num_trials: int = Field(default=6, ge=1, description="Trial budget of the search.")
    max_rounds: int = Field(default=200, ge=1, description="Boosting rounds a trial may reach.")
    grace_rounds: int = Field(
        default=25, ge=1, description="Rounds before early stopping (ASHA) may stop a trial."
    )
    checkpoint_every: int = Field(default=25, ge=1, description="Rounds between checkpoints.")
    num_workers: int = Field(
        default=2,
        ge=0,
        description="Ray Train workers of the final fit; 0 fits in the step's process, "
        "which saves the worker group's start-up where the data is small.",
    )
    seed: int = Field(default=42, description="Seed of the search and of LightGBM.")

    @field_validator("search_space")
    @classmethod
    def _known_hyperparameters(cls, space: dict) -> dict:
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

    @field_validator("train_start", "validation_start", "holdout_start")
    @classmethod
    def _iso_date(cls, value: str, info) -> str:
        parse_utc(value, info.field_name)
        return value

    @model_validator(mode="after")
    def _grace_within_rounds(self) -> "TrainingConfig":
        if self.grace_rounds > self.max_rounds:
            raise ValueError(
                f"grace_rounds ({self.grace_rounds}) must not exceed max_rounds ({self.max_rounds})"
            )
        return self

    @model_validator(mode="after")
    def _splits_in_order(self) -> "TrainingConfig":
        order = ["train_start", "validation_start", "holdout_start"]
        for earlier, later in zip(order, order[1:], strict=False):
            if parse_utc(getattr(self, earlier)) >= parse_utc(getattr(self, later)):
                raise ValueError(
                    f"{earlier} ({getattr(self, earlier)}) must come before "
                    f"{later} ({getattr(self, later)})"
                )
        return self

    def split_dates(self) -> tuple[datetime, datetime, datetime]:
        return (
            parse_utc(self.train_start),
            parse_utc(self.validation_start),
            parse_utc(self.holdout_start),
        )

    def tune_search_space(self) -> dict:
        return {
            name: dimension.to_tune(TUNABLE_HYPERPARAMETERS[name])
            for name, dimension in self.search_space.items()
        }


def training_config_for(use_case: UseCase) -> type[TrainingConfig]:
    """TrainingConfig with the use case's feature service and splits as its defaults."""
    splits = use_case.splits

    class UseCaseTrainingConfig(TrainingConfig):
        feature_service: str = Field(
            default="",
            description="The Feast feature service whose training set to use; the version of "
            "the use case's current features when empty.",
        )
        train_start: str = Field(
            default=splits.train_start.isoformat(), description="UTC date (ISO 8601)."
        )
        validation_start: str = Field(
            default=splits.validation_start.isoformat(), description="UTC date (ISO 8601)."
        )
        holdout_start: str = Field(
            default=splits.holdout_start.isoformat(), description="UTC date (ISO 8601)."
        )

    return UseCaseTrainingConfig


def parse_utc(value: str, field: str = "date") -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{field}: {value!r} is not an ISO 8601 date such as 2013-11-01") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
