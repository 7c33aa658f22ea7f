"""The training set, checked and split in time into train, validation and holdout."""

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from facilflow_assets.features.target_rows import EVENT_TIME as TIME_COLUMN
from facilflow_assets.training.objective import OBJECTIVES, Objective
from facilflow_assets.use_case import FEATURE_SEPARATOR

# A text feature -> its categories; LightGBM takes a category as its position here, and a
# value not among them (or null) as missing.
Categories = dict[str, list[str]]


class TrainingDataError(ValueError):
    """The training set cannot train the use case's model; the message says why and where."""


@dataclass(frozen=True)
class Split:
    """Feature matrix and labels of one time slice."""

    features: np.ndarray
    labels: np.ndarray
    frame: pl.DataFrame  # the slice's rows, with entity columns, for baselines and reports

    @property
    def rows(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class TrainingData:
    feature_names: list[str]
    label: str
    objective: Objective
    train: Split
    validation: Split
    holdout: Split
    categories: Categories = field(default_factory=dict)


def feature_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if FEATURE_SEPARATOR in c]


def read_training_set(path: Path) -> pl.DataFrame:
    if not path.exists():
        raise TrainingDataError(f"no training set at {path}; materialize features/training_set")
    return pl.read_parquet(path)


def split_training_data(
    frame: pl.DataFrame,
    source: str,
    label: str,
    train_start: datetime,
    validation_start: datetime,
    holdout_start: datetime,
    task: str = "binary",
) -> TrainingData:
    """Check the training set read from `source` for the `task` and split it at the three
    dates.

    Raises TrainingDataError for an empty set, missing label values, a binary label that is
    not 0/1 or has one class in the training slice, a regression label that is not a finite
    number or does not vary, or an empty slice.
    """
    where = f"training set {source}"
    if label not in frame.columns:
        raise TrainingDataError(f"{where} has no label column '{label}'")
    if frame.height == 0:
        raise TrainingDataError(f"{where} is empty: there is nothing to train on")
    _check_labels(frame, label, where, task)
    features = feature_columns(frame)
    if not features:
        raise TrainingDataError(f"{where} has no feature columns (named <view>__<feature>)")
    train = train_slice(frame, train_start, validation_start)
    validation = frame.filter(
        pl.col(TIME_COLUMN).is_between(validation_start, holdout_start, closed="left")
    )
    holdout = frame.filter(pl.col(TIME_COLUMN) >= holdout_start)
    slices = {"train": train, "validation": validation, "holdout": holdout}
    for name, rows in slices.items():
        if rows.height == 0:
            raise TrainingDataError(
                f"{where}: the {name} slice is empty (train from {train_start.date()}, validation "
                f"from {validation_start.date()}, holdout from {holdout_start.date()}; rows span "
                f"{frame[TIME_COLUMN].min()} to {frame[TIME_COLUMN].max()})"
            )
    if train[label].n_unique() < 2:
        kind = "class" if task == "binary" else "value"
        raise TrainingDataError(
            f"{where}: the label '{label}' has a single {kind} ({train[label][0]}) in the "
            "train slice; there is nothing to learn"
        )
    categories = learn_categories(train, features)
    return TrainingData(
        feature_names=features,
        label=label,
        objective=OBJECTIVES[task],
        categories=categories,
        **{name: to_split(rows, features, label, categories) for name, rows in slices.items()},
    )


def learn_categories(train: pl.DataFrame, features: list[str]) -> Categories:
    """Each text feature's values in the train slice, the most frequent first."""
    return {
        feature: train[feature]
        .drop_nulls()
        .value_counts()
        .sort(["count", feature], descending=[True, False])[feature]
        .to_list()
        for feature in features
        if train.schema[feature] == pl.String
    }


def train_slice(frame: pl.DataFrame, train_start: datetime, validation_start: datetime):
    return frame.filter(
        pl.col(TIME_COLUMN).is_between(train_start, validation_start, closed="left")
    )


def _check_labels(frame: pl.DataFrame, label: str, where: str, task: str) -> None:
    missing = frame.with_row_index("row").filter(pl.col(label).is_null())
    if missing.height:
        rows = ", ".join(str(r) for r in missing["row"].head(5))
        raise TrainingDataError(
            f"{where}: {missing.height} row(s) have no value in the label '{label}' "
            f"(first rows: {rows})"
        )
    if not frame.schema[label].is_numeric():
        raise TrainingDataError(
            f"{where}: the label '{label}' is {frame.schema[label]}, not a number"
        )
    values = pl.col(label).cast(pl.Float64)
    wrong = ~values.is_in([0.0, 1.0]) if task == "binary" else ~values.is_finite()
    unexpected = frame.with_row_index("row").filter(wrong)
    if unexpected.height:
        row = unexpected.row(0, named=True)
        expected = "0 or 1" if task == "binary" else "a finite number"
        raise TrainingDataError(
            f"{where}: the label '{label}' must be {expected}; row {row['row']} holds {row[label]}"
        )


def to_split(rows: pl.DataFrame, features: list[str], label: str, categories: Categories) -> Split:
    return Split(
        features=feature_matrix(rows, features, categories),
        labels=rows[label].cast(pl.Float64).to_numpy(),
        frame=rows,
    )


def feature_matrix(
    rows: pl.DataFrame, features: list[str], categories: Categories | None = None
) -> np.ndarray:
    """Features as float32, nulls as NaN (LightGBM's missing value); a text feature as its
    category's code, NaN for a value the model has not seen."""
    categories = categories or {}
    text = [f for f in features if rows.schema[f] == pl.String and f not in categories]
    if text:
        raise TrainingDataError(
            f"the feature(s) {', '.join(text)} are text, but the model has no categories for "
            "them: it was trained when they were numbers"
        )
    return rows.select(
        pl.col(f)
        .cast(pl.String)
        .replace_strict(categories[f], range(len(categories[f])), default=None)
        .cast(pl.Float32)
        if f in categories
        else pl.col(f).cast(pl.Float32)
        for f in features
    ).to_numpy()
