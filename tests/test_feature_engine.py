"""Each feature kind, computed by the polars engine, against a plain-Python reference."""

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from facilflow_assets.feature_spec import FeatureTableSpec
from facilflow_assets.features.engine import FeatureDataError, check_source, compute_features

T0 = datetime(2013, 3, 1, tzinfo=UTC)
COLUMNS = {"station": "string", "at": "timestamp", "value": "float", "count": "int"}


def _table(features: list[dict], keep: tuple[str, ...] = ("value", "count")) -> FeatureTableSpec:
    return FeatureTableSpec.model_validate(
        {
            "name": "t",
            "description": "test",
            "source": {
                "model": "s/t",
                "entity": ["station"],
                "timestamp": "at",
                "columns": COLUMNS,
            },
            "keep": list(keep),
            "features": features,
        }
    )


@pytest.fixture
def readings() -> pl.DataFrame:
    """Two stations, irregular times (gaps of 1-3 h), given in scrambled order."""
    rows = []
    for station, offsets in {"A": [0, 1, 2, 5, 6, 9, 10], "B": [0, 3, 4, 5]}.items():
        for i, hours in enumerate(offsets):
            value = 0.0 if (station, i) == ("A", 3) else float(i * 2 + (station == "B"))
            rows.append((station, T0 + timedelta(hours=hours), value, i))
    frame = pl.DataFrame(rows, schema=["station", "at", "value", "count"], orient="row")
    return frame.with_columns(pl.col("at").cast(pl.Datetime("us", "UTC"))).reverse()


def _by_station(frame: pl.DataFrame, station: str) -> list[dict]:
    return frame.filter(pl.col("station") == station).sort("at").to_dicts()


def _compute(features: list[dict], readings: pl.DataFrame) -> pl.DataFrame:
    return compute_features(_table(features), readings.lazy())


def test_rolling_over_rows_and_over_time_per_entity(readings):
    out = _compute(
        [
            {"name": "mean_2", "kind": "rolling", "column": "value", "stat": "mean", "window": 2},
            {"name": "max_3h", "kind": "rolling", "column": "value", "stat": "max", "window": "3h"},
        ],
        readings,
    )
    for station in ("A", "B"):
        rows = _by_station(readings, station)
        for i, row in enumerate(_by_station(out, station)):
            window = [r["value"] for r in rows[max(0, i - 1) : i + 1]]
            assert row["mean_2"] == pytest.approx(sum(window) / len(window))
            recent = [
                r["value"] for r in rows if row["at"] - timedelta(hours=3) < r["at"] <= row["at"]
            ]
            assert row["max_3h"] == max(recent)


def test_lag_by_steps_and_by_duration(readings):
    out = _compute(
        [
            {"name": "prev", "kind": "lag", "column": "value", "steps": 1},
            {"name": "two_hours_ago", "kind": "lag", "column": "value", "by": "2h"},
        ],
        readings,
    )
    rows = _by_station(readings, "A")
    for i, row in enumerate(_by_station(out, "A")):
        assert row["prev"] == (rows[i - 1]["value"] if i else None)
        target = row["at"] - timedelta(hours=2)
        # The latest value at or before t - 2h, and not older than t - 4h.
        earlier = [r for r in rows if target - timedelta(hours=2) <= r["at"] <= target]
        assert row["two_hours_ago"] == (earlier[-1]["value"] if earlier else None)


def test_ratio_defines_the_result_of_a_zero_divisor(readings):
    out = _compute(
        [
            {"name": "per_value", "kind": "ratio", "numerator": "count", "denominator": "value"},
            {
                "name": "per_value_or_minus_one",
                "kind": "ratio",
                "numerator": "count",
                "denominator": "value",
                "on_zero": -1.0,
            },
        ],
        readings,
    )
    zero = out.filter(pl.col("value") == 0)
    assert zero.height == 2  # A's first and fourth readings
    assert zero["per_value"].is_null().all()
    assert (zero["per_value_or_minus_one"] == -1.0).all()
    other = out.filter(pl.col("value") != 0)
    assert (other["per_value"] == other["count"] / other["value"]).all()


def test_time_parts_in_the_given_time_zone():
    spec = _table(
        [
            {
                "name": "hour_ny",
                "kind": "time",
                "column": "at",
                "part": "hour",
                "time_zone": "America/New_York",
            },
            {
                "name": "dow",
                "kind": "time",
                "column": "at",
                "part": "day_of_week",
                "time_zone": "America/New_York",
            },
            {
                "name": "weekend",
                "kind": "time",
                "column": "at",
                "part": "is_weekend",
                "time_zone": "America/New_York",
            },
            {"name": "month", "kind": "time", "column": "at", "part": "month"},
        ]
    )
    # Saturday 2013-06-01 03:30 UTC is Friday 23:30 in New York.
    at = datetime(2013, 6, 1, 3, 30, tzinfo=UTC)
    frame = pl.DataFrame({"station": ["A"], "at": [at], "value": [1.0], "count": [1]})
    row = compute_features(spec, frame.lazy()).row(0, named=True)
    assert (row["hour_ny"], row["dow"], row["weekend"], row["month"]) == (23, 5, False, 6)


def test_aggregates_count_and_sum_over_trailing_windows(readings):
    out = _compute(
        [
            {"name": "n_3h", "kind": "aggregate", "agg": "count", "window": "3h"},
            {
                "name": "sum_3h",
                "kind": "aggregate",
                "agg": "sum",
                "column": "value",
                "window": "3h",
            },
        ],
        readings,
    )
    for station in ("A", "B"):
        rows = _by_station(readings, station)
        for row in _by_station(out, station):
            window = [r for r in rows if row["at"] - timedelta(hours=3) < r["at"] <= row["at"]]
            assert row["n_3h"] == len(window)
            assert row["sum_3h"] == pytest.approx(sum(r["value"] for r in window))


def test_an_aggregate_can_group_by_other_columns_than_the_entity(readings):
    spec = FeatureTableSpec.model_validate(
        {
            "name": "t",
            "description": "test",
            "source": {
                "model": "s/t",
                "entity": ["station"],
                "timestamp": "at",
                "columns": {**COLUMNS, "network": "string"},
            },
            "features": [
                {
                    "name": "network_2h",
                    "kind": "aggregate",
                    "agg": "count",
                    "window": "2h",
                    "group_by": ["network"],
                }
            ],
        }
    )
    frame = readings.with_columns(pl.lit("north").alias("network"))
    out = compute_features(spec, frame.lazy())
    everything = frame.to_dicts()
    for row in out.to_dicts():
        window = [r for r in everything if row["at"] - timedelta(hours=2) < r["at"] <= row["at"]]
        assert row["network_2h"] == len(window)


def test_rows_with_one_entity_and_time_become_one_row_that_saw_them_all():
    frame = pl.DataFrame(
        {
            "station": ["A", "A", "A"],
            "at": [T0, T0, T0 + timedelta(hours=1)],
            "value": [1.0, 3.0, 5.0],
            "count": [1, 2, 3],
        }
    )
    out = compute_features(
        _table([{"name": "n", "kind": "aggregate", "agg": "count", "window": "1d"}]), frame.lazy()
    )
    assert out["n"].to_list() == [2, 3]


def test_source_columns_are_checked_against_the_spec(readings):
    table = _table([])
    with pytest.raises(FeatureDataError, match="source 's/t' has no column 'count'"):
        check_source(table, readings.drop("count").schema)
    wrong = readings.with_columns(pl.col("value").cast(pl.String)).schema
    with pytest.raises(FeatureDataError, match="column 'value' of 's/t' is String"):
        check_source(table, wrong)
