"""Per-column drift thresholds calibrated on the training period's own days.

One day of flights differs from months of training rows in nearly every feature (a day has
one day's weather and one day's delays), so Evidently's default thresholds would call
every day drifted. A column's threshold is instead how far the training period's own days
strayed from the training rows as a whole: the 95th percentile of their scores under the
column's Evidently test, never below Evidently's default. A monitored day then drifts in a
column when it is further from what the model learned than nearly every day it learned
from, as winter days are from a model trained on spring and summer.
"""

import numpy as np
import polars as pl

from facilflow_assets.drift.statistics import NOT_COMPARED, column_drift

CALIBRATION_DAYS = 24  # days of the training period scored, evenly spread
CALIBRATION_REFERENCE_ROWS = 10_000
QUANTILE = 0.95


def day_thresholds(rows: pl.DataFrame, columns: list[str], time_column: str) -> dict[str, float]:
    """Thresholds per column from the days of `rows` (the training slice); a column left
    out is judged by its test's default threshold."""
    with_day = rows.with_columns(pl.col(time_column).dt.date().alias("_day"))
    days = with_day["_day"].unique().sort()
    spread = np.linspace(0, days.len() - 1, min(CALIBRATION_DAYS, days.len()))
    picked = days.gather(np.unique(spread.round().astype(int)))
    reference = rows.select(columns)
    reference = reference.sample(min(reference.height, CALIBRATION_REFERENCE_ROWS), seed=0)
    scores: dict[str, list[float]] = {column: [] for column in columns}
    defaults: dict[str, float] = {}
    for day, day_rows in with_day.filter(pl.col("_day").is_in(picked.implode())).group_by("_day"):
        for drift in column_drift(reference, day_rows, columns, 1.0, f"training day {day}").columns:
            if drift.test in NOT_COMPARED:  # no values on a side: no score, no test
                continue
            defaults[drift.column] = drift.threshold
            if np.isfinite(drift.score):
                scores[drift.column].append(drift.score)
    # A column no picked day had values in keeps its test's default threshold.
    return {
        column: max(default, float(np.quantile(scores[column], QUANTILE)))
        if scores[column]
        else default
        for column, default in defaults.items()
    }
