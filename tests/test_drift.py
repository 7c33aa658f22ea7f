"""Drift verdicts: Evidently's own, on real-shaped frames; and the inputs that must not pass
silently (an empty partition, a missing column, a column with no values) nor crash (a
column empty or constant on either side, as an unreported weather feature is)."""

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset
from mlflow.tracking import MlflowClient

from facilflow_assets.drift.calibration import day_thresholds
from facilflow_assets.drift.reference import (
    REFERENCE_FOLDER,
    THRESHOLDS_FILE,
    read_thresholds,
)
from facilflow_assets.drift.statistics import (
    NO_REFERENCE_VALUES,
    NO_VALUES,
    DriftInputError,
    column_drift,
    mean_shift,
)
from facilflow_assets.monitoring.drift_assets import write_drift_report


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
        column_drift(
            reference, reference.head(0), reference.columns, 0.5, "the features of 2013-01-15"
        )
    with pytest.raises(DriftInputError, match="2013-01-15 lacks column\\(s\\) wind"):
        column_drift(reference, reference.drop("wind"), reference.columns, 0.5, "2013-01-15")


def test_a_column_with_no_values_is_drift_not_a_silent_pass():
    reference = frames(2_000, 0.0, 1)
    current = reference.with_columns(pl.lit(None, pl.Float64).alias("wind"))
    result = column_drift(reference, current, reference.columns, 0.5, "today")
    wind = next(c for c in result.columns if c.column == "wind")
    assert (wind.test, wind.drifted, wind.current_values) == (NO_VALUES, True, 0)
    assert result.drifted_columns == ["wind"]


def test_empty_and_constant_columns_on_either_side_are_stated_and_reported_never_a_crash(
    tmp_path,
):
    reference = frames(2_000, 0.0, 1).with_columns(
        pl.lit(None, pl.Float64).alias("gust_never_reported"), pl.lit(1.0).alias("runway")
    )
    current = frames(400, 0.0, 2).with_columns(
        pl.lit(None, pl.Float64).alias("wind"),  # unreported today
        pl.lit(3.0).alias("gust_never_reported"),
        pl.lit(1.0).alias("runway"),  # constant, as in the reference
    )
    result = column_drift(reference, current, reference.columns, 0.5, "2013-01-15")
    by_column = {c.column: c for c in result.columns}
    assert (by_column["wind"].test, by_column["wind"].drifted) == (NO_VALUES, True)
    never = by_column["gust_never_reported"]
    assert (never.test, never.drifted, never.current_values) == (NO_REFERENCE_VALUES, False, 400)
    assert (by_column["runway"].score, by_column["runway"].drifted) == (0.0, False)
    assert result.unjudged_columns == ["gust_never_reported"]
    assert result.drift_share == 1 / 5  # wind, of the five columns with reference values
    assert result.compared_columns == ["temperature", "weekday", "precipitation", "runway"]
    # Evidently's report, which refuses an empty column, covers the compared ones.
    write_drift_report(reference, current, tmp_path / "day.html", result)
    html = (tmp_path / "day.html").read_text()
    assert "runway" in html and "precipitation" in html
    # With nothing comparable, a page that says so.
    empty = current.with_columns(pl.lit(None, pl.Float64).alias(c) for c in current.columns)
    nothing = column_drift(reference, empty, reference.columns, 0.5, "2013-01-16")
    assert nothing.compared_columns == [] and nothing.drifted
    write_drift_report(reference, empty, tmp_path / "none.html", nothing)
    assert "No column to compare" in (tmp_path / "none.html").read_text()
    # The prediction's own measure says so too, rather than stopping the asset.
    shift = mean_shift(reference, current, "gust_never_reported", 0.5)
    assert (shift.columns[0].test, shift.drifted, shift.drift_share) == (
        NO_REFERENCE_VALUES,
        False,
        0.0,
    )


def test_a_column_with_no_values_in_the_training_days_keeps_its_default_threshold():
    rows = seasons(30, "2013-06-01", 3).with_columns(pl.lit(None, pl.Float64).alias("gust"))
    thresholds = day_thresholds(rows, ["temperature", "wind", "gust"], "event_timestamp")
    assert set(thresholds) == {"temperature", "wind"}  # gust: no test could score it


def seasons(days: int, start: str, seed: int) -> pl.DataFrame:
    """Flights of `days` days from `start`: a temperature that follows the season, a wind
    that does not, 200 flights a day."""
    rng = np.random.default_rng(seed)
    first = datetime.fromisoformat(start).replace(tzinfo=UTC)
    times = [
        first + timedelta(days=d, minutes=int(m))
        for d in range(days)
        for m in rng.integers(0, 1440, 200)
    ]
    day_of_year = np.array([t.timetuple().tm_yday for t in times])
    seasonal = 55 - 25 * np.cos(2 * np.pi * (day_of_year - 15) / 365)
    return pl.DataFrame(
        {
            "event_timestamp": times,
            "temperature": seasonal + rng.normal(0, 5, len(times)),
            "wind": rng.normal(10, 3, len(times)),
        }
    )


def test_thresholds_calibrated_on_training_days_call_an_unseen_season_drift():
    spring_to_summer = seasons(180, "2013-03-01", 1)
    thresholds = day_thresholds(spring_to_summer, ["temperature", "wind"], "event_timestamp")
    # Days of one season differ in temperature far more than Evidently's default allows.
    assert thresholds["temperature"] > 0.5 and thresholds["wind"] == pytest.approx(0.1, abs=0.1)
    reference = spring_to_summer.drop("event_timestamp")
    june_day = seasons(1, "2013-06-15", 2).drop("event_timestamp")
    january_day = seasons(1, "2013-01-15", 3).drop("event_timestamp")
    columns = ["temperature", "wind"]
    uncalibrated = column_drift(reference, june_day, columns, 0.5, "2013-06-15")
    assert uncalibrated.drifted_columns == ["temperature"]  # every single day would drift
    calibrated = column_drift(reference, june_day, columns, 0.5, "2013-06-15", thresholds)
    assert calibrated.drifted_columns == [] and not calibrated.drifted
    winter = column_drift(reference, january_day, columns, 0.5, "2013-01-15", thresholds)
    assert winter.drifted_columns == ["temperature"] and winter.drifted


def test_prediction_drift_is_a_mean_shift_beyond_the_configured_standard_deviations():
    rng = np.random.default_rng(0)
    holdout = pl.DataFrame({"prediction": rng.beta(2, 8, 5_000)})  # mean 0.2, std 0.12
    usual = pl.DataFrame({"prediction": rng.beta(2, 8, 800)})
    shifted = pl.DataFrame({"prediction": rng.beta(8, 2, 800)})  # mean 0.8: 5 std away
    assert not mean_shift(holdout, usual, "prediction", 2.0).drifted
    result = mean_shift(holdout, shifted, "prediction", 2.0)
    [column] = result.columns
    assert result.drifted and column.score == pytest.approx(5, abs=0.5)
    silent = mean_shift(
        holdout,
        pl.DataFrame({"prediction": [None, None]}, schema=holdout.schema),
        "prediction",
        2.0,
    )
    assert silent.drifted and silent.columns[0].test == NO_VALUES
    with pytest.raises(DriftInputError, match="the current prediction has no rows"):
        mean_shift(holdout, holdout.head(0), "prediction", 2.0)


def test_a_version_evaluated_before_calibration_has_no_thresholds_to_read(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("drift", artifact_location=(tmp_path / "a").as_uri())
    older, newer = (client.create_run(experiment).info.run_id for _ in range(2))
    thresholds = tmp_path / THRESHOLDS_FILE
    thresholds.write_text(json.dumps({"temperature": 0.8}))
    client.log_artifact(newer, str(thresholds), REFERENCE_FOLDER)
    assert read_thresholds(client, older) is None
    assert read_thresholds(client, newer) == {"temperature": 0.8}
