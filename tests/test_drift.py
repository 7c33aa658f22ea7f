"""Drift verdicts: Evidently's own, on real-shaped frames; and the inputs that must not pass
silently (an empty partition, a missing column, a column with no values)."""

import numpy as np
import polars as pl
import pytest
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

from facilflow_assets.monitoring.drift import NO_VALUES, DriftInputError, column_drift


def frames(rows: int, shift: float, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.gamma(2.0, 1.0, rows)
    values[rng.random(rows) < 0.1] = np.nan
    return pl.DataFrame(
        {
            "temperature": rng.normal(50 + shift * 10, 10, rows),
            "wind": rng.normal(10, 3, rows),
            "weekday": rng.choice(
                [0.0, 1.0, 2.0], rows, p=[0.4, 0.3, 0.3] if not shift else [0.2, 0.3, 0.5]
            ),
            "precipitation": values,
        }
    ).fill_nan(None)


def test_the_verdicts_are_those_of_a_full_evidently_run():
    reference, current = frames(5_000, 0.0, 1), frames(8_000, 1.0, 2)
    result = column_drift(reference, current, reference.columns, 0.5, "the current frame")
    definition = DataDefinition(numerical_columns=reference.columns)
    snapshot = Report([DataDriftPreset()]).run(
        current_data=Dataset.from_pandas(current.to_pandas(), data_definition=definition),
        reference_data=Dataset.from_pandas(reference.to_pandas(), data_definition=definition),
    )
    full = {
        m["config"]["column"]: m["value"] >= m["config"]["threshold"]
        for m in snapshot.dict()["metrics"]
        if m["config"]["type"].endswith("ValueDrift")
    }
    assert {c.column: c.drifted for c in result.columns} == full
    assert result.drifted_columns == ["temperature", "weekday"]
    assert result.drift_share == 0.5 and result.drifted
    assert {c.column: c.test for c in result.columns}["weekday"] == "jensenshannon"


def test_an_empty_partition_or_a_missing_column_is_an_error_naming_it():
    reference = frames(2_000, 0.0, 1)
    with pytest.raises(DriftInputError, match="the features of 2013-01-15 has no rows"):
        column_drift(reference, reference.head(0), reference.columns, 0.5,
                     "the features of 2013-01-15")  # fmt: skip
    with pytest.raises(DriftInputError, match="2013-01-15 lacks column\\(s\\) wind"):
        column_drift(reference, reference.drop("wind"), reference.columns, 0.5, "2013-01-15")


def test_a_column_with_no_values_is_drift_not_a_silent_pass():
    reference = frames(2_000, 0.0, 1)
    current = reference.with_columns(pl.lit(None, pl.Float64).alias("wind"))
    result = column_drift(reference, current, reference.columns, 0.5, "today")
    wind = next(c for c in result.columns if c.column == "wind")
    assert (wind.test, wind.drifted, wind.current_values) == (NO_VALUES, True, 0)
    assert result.drifted_columns == ["wind"]
