"""Per-column drift between a reference frame and a current one, with Evidently's own tests.

For each column Evidently's data drift preset picks a test (for more than 1,000 reference
rows: Wasserstein distance normed by the reference's spread for numbers with more than
five values, Jensen-Shannon otherwise) and a threshold; this module calls the same test
functions on the same cleaned values (nulls and infinities dropped), so its verdicts are
Evidently's, without the report's rendering and summaries of every column.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl

# A column with no values today: the feature stopped arriving, which is drift.
NO_VALUES = "no values"
# A column with no values in the reference (what the model learned from): not judged.
NO_REFERENCE_VALUES = "no reference values"
NOT_COMPARED = (NO_VALUES, NO_REFERENCE_VALUES)


class DriftInputError(ValueError):
    """The frames cannot be compared; the message names the frame and column."""


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    test: str
    score: float
    threshold: float
    drifted: bool
    current_values: int


@dataclass(frozen=True)
class DriftResult:
    columns: list[ColumnDrift]
    drift_share_threshold: float
    current_rows: int
    reference_rows: int

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def unjudged_columns(self) -> list[str]:
        """Columns the reference has no values in: nothing to compare today's against."""
        return [c.column for c in self.columns if c.test == NO_REFERENCE_VALUES]

    @property
    def compared_columns(self) -> list[str]:
        """Columns with values on both sides, which a test compared."""
        return [c.column for c in self.columns if c.test not in NOT_COMPARED]

    @property
    def drift_share(self) -> float:
        judged = len(self.columns) - len(self.unjudged_columns)
        return len(self.drifted_columns) / judged if judged else 0.0

    @property
    def drifted(self) -> bool:
        return self.drift_share >= self.drift_share_threshold

    def table(self) -> pl.DataFrame:
        return pl.DataFrame([vars(c) for c in self.columns]).sort("score", descending=True)


def _values(frame: pl.DataFrame, column: str) -> np.ndarray:
    """The column's values: a category's text, nulls dropped; a number's, nulls and
    infinities dropped."""
    series = frame.get_column(column)
    if series.dtype == pl.String:
        return series.drop_nulls().to_numpy()
    values = series.cast(pl.Float64).to_numpy()
    return values[np.isfinite(values)]


def is_categorical(frame: pl.DataFrame, column: str) -> bool:
    """A text column: a category, compared as one (Jensen-Shannon or chi-square)."""
    return frame.schema[column] == pl.String


def column_drift(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    columns: list[str],
    drift_share_threshold: float,
    where: str,
    thresholds: dict[str, float] | None = None,
) -> DriftResult:
    """Drift of each of `columns`; `where` names the current data in errors. `thresholds`
    replace the tests' default thresholds of the columns they name."""
    # Evidently takes seconds to import; every process that loads the definitions would pay.
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    if current.height == 0:
        raise DriftInputError(f"{where} has no rows to compare")
    for frame, name in ((reference, "the reference"), (current, where)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DriftInputError(f"{name} lacks column(s) {', '.join(missing)}")
    results = []
    for column in columns:
        reference_values, current_values = _values(reference, column), _values(current, column)
        if reference_values.size == 0 or current_values.size == 0:
            results.append(_not_compared(column, reference_values, current_values))
            continue
        ref, cur = pd.Series(reference_values), pd.Series(current_values)
        kind = ColumnType.Categorical if is_categorical(reference, column) else ColumnType.Numerical
        test = get_stattest(ref, cur, kind, None)
        outcome = test(ref, cur, kind, (thresholds or {}).get(column))
        results.append(
            ColumnDrift(
                column,
                test.name,
                float(outcome.drift_score),
                float(outcome.actual_threshold),
                bool(outcome.drifted),
                int(current_values.size),
            )
        )
    return DriftResult(results, drift_share_threshold, current.height, reference.height)


def _not_compared(column: str, reference: np.ndarray, current: np.ndarray) -> ColumnDrift:
    """A column without values on one side: no test runs, the reason is its test's name."""
    if reference.size == 0:
        nan = float("nan")
        return ColumnDrift(column, NO_REFERENCE_VALUES, nan, nan, False, int(current.size))
    return ColumnDrift(column, NO_VALUES, float("nan"), float("nan"), True, 0)


MEAN_SHIFT = "mean shift (reference std)"


def mean_shift(
    reference: pl.DataFrame, current: pl.DataFrame, column: str, max_shift_std: float
) -> DriftResult:
    """Drift as the seeds define it for predictions: the current mean further from the
    reference mean than `max_shift_std` reference standard deviations."""
    if current.height == 0:
        raise DriftInputError(f"the current {column} has no rows to compare")
    reference_values, current_values = _values(reference, column), _values(current, column)
    if reference_values.size == 0 or current_values.size == 0:
        drift = _not_compared(column, reference_values, current_values)
    else:
        shift = abs(current_values.mean() - reference_values.mean())
        shift_std = float(shift / max(reference_values.std(), 1e-9))
        drift = ColumnDrift(
            column,
            MEAN_SHIFT,
            shift_std,
            max_shift_std,
            shift_std > max_shift_std,
            int(current_values.size),
        )
    return DriftResult([drift], 1.0, current.height, reference.height)
