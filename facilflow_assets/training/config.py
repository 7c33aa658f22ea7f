"""The use case's training settings: time splits, the search space and the trial budget."""

from datetime import UTC, datetime

import dagster as dg
from pydantic import Field, field_validator, model_validator
from ray import tune

from facilflow_assets.search_space import (
    DEFAULT_SEARCH_SPACE,
    TUNABLE_HYPERPARAMETERS,
    SearchDimension,
    check_budget,
    check_search_space,
)
from facilflow_assets.use_case import UseCase


def tune_domain(dimension: SearchDimension, kind: type):
    """`dimension` as a Ray Tune search domain over values of `kind`."""
    if dimension.distribution == "choice":
        return tune.choice([kind(v) for v in dimension.values or []])
    low, high = dimension.low or 0.0, dimension.high or 0.0  # checked: both given
    if dimension.distribution == "randint":
        # Tune's randint excludes the upper bound; the config's `high` is inclusive.
        return tune.randint(int(low), int(high) + 1)
    return getattr(tune, dimension.distribution)(low, high)


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
        return check_search_space(space)

    @field_validator("train_start", "validation_start", "holdout_start")
    @classmethod
    def _iso_date(cls, value: str, info) -> str:
        parse_utc(value, info.field_name)
        return value

    @model_validator(mode="after")
    def _grace_within_rounds(self) -> "TrainingConfig":
        check_budget(self.max_rounds, self.grace_rounds)
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
            name: tune_domain(dimension, TUNABLE_HYPERPARAMETERS[name])
            for name, dimension in self.search_space.items()
        }


def training_config_for(use_case: UseCase) -> type[TrainingConfig]:
    """TrainingConfig with the use case's feature service, splits, search space and budget
    as its defaults."""
    splits, search = use_case.splits, use_case.training

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
        search_space: dict[str, SearchDimension] = Field(
            default={
                name: dimension.model_dump(exclude_none=True)
                for name, dimension in search.search_space.items()
            },
            validate_default=True,
            description="Hyperparameters to tune (the use case file's `training.search_space` "
            f"by default), among: {', '.join(TUNABLE_HYPERPARAMETERS)}.",
        )
        num_trials: int = Field(default=search.num_trials, ge=1, description="Trial budget.")
        max_rounds: int = Field(
            default=search.max_rounds, ge=1, description="Boosting rounds a trial may reach."
        )
        grace_rounds: int = Field(
            default=search.grace_rounds,
            ge=1,
            description="Rounds before early stopping (ASHA) may stop a trial.",
        )

    return UseCaseTrainingConfig


def parse_utc(value: str, field: str = "date") -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{field}: {value!r} is not an ISO 8601 date such as 2013-11-01") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
