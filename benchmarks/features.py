"""Benchmark: the polars feature engine against the same features written by hand in pandas.

What is measured: one feature table spec, built in code, with every feature kind the
platform offers (a 5-row rolling mean, a 6-hour rolling std, a 1-step lag, a 1-hour lag,
a ratio, hour and day of week, a 6-hour count and sum), computed over a synthetic event log
of 10,000,000 rows and 10,000 entities:

  polars: `compute_features(spec, frame.lazy())`, the engine the feature table
          assets run;
  pandas: the same features as a data scientist writes them by hand: sort, groupby +
          rolling (by rows and by time) and shift, merge_asof for the lag by duration,
          dt accessors for the calendar parts.

How: the data is generated with numpy (seed 7): per entity, event times at least a second
and on average an hour apart (so unique per entity: the engine keeps one row per entity
and time, pandas would keep them all), rows then ordered by time as an event log arrives;
`value` is normal, `other` positive with 1% exact zeros (the ratio's null case). Each side
runs three times, timed with `time.perf_counter` from its in-memory frame (polars or
pandas) to its finished frame, and the best run counts; all runs are printed, as on a small
shared machine they vary by tens of percent. Generating and converting the data is not
timed. The results are compared on every row and column: floats equal within a relative
tolerance of 1e-9 (absolute below 1) or missing (null, NaN) on both sides, other columns
exactly equal. Where a time-window statistic differs, it is recomputed exactly from the
window's rows (two passes, extended precision) to show which side is right.

Run from the project root (needs about 6 GiB of memory and several minutes; smaller
`--rows`, `--entities` and `--repeats` make a smoke run of seconds):

    .venv/bin/python benchmarks/features.py [--rows N] [--entities N] [--repeats N]

The last line of output is one JSON object with the figures.
"""

import argparse
import gc
import json
import sys
import time

import numpy as np
import pandas as pd
import polars as pl

from facilflow_assets.feature_spec import FeatureTableSpec, parse_duration
from facilflow_assets.features.engine import compute_features

ROWS = 10_000_000
ENTITIES = 10_000
SEED = 7
START = np.datetime64("2024-01-01T00:00:00", "s")
MEAN_GAP_SECONDS = 3_600
ZERO_SHARE = 0.01
RELATIVE_TOLERANCE = 1e-9
REPEATS = 3

SPEC = FeatureTableSpec.model_validate(
    {
        "name": "synthetic_events",
        "description": "Synthetic events per entity, for the engine benchmark.",
        "source": {
            "model": "synthetic/events",
            "entity": ["entity_id"],
            "timestamp": "ts",
            "columns": {"entity_id": "int", "ts": "timestamp", "value": "float", "other": "float"},
        },
        "keep": ["value", "other"],
        "features": [
            {
                "name": "value_mean_5",
                "kind": "rolling",
                "column": "value",
                "stat": "mean",
                "window": 5,
            },
            {
                "name": "value_std_6h",
                "kind": "rolling",
                "column": "value",
                "stat": "std",
                "window": "6h",
            },
            {"name": "value_previous", "kind": "lag", "column": "value", "steps": 1},
            {"name": "value_1h_ago", "kind": "lag", "column": "value", "by": "1h"},
            {
                "name": "value_over_other",
                "kind": "ratio",
                "numerator": "value",
                "denominator": "other",
            },
            {"name": "hour", "kind": "time", "column": "ts", "part": "hour"},
            {"name": "day_of_week", "kind": "time", "column": "ts", "part": "day_of_week"},
            {"name": "events_6h", "kind": "aggregate", "agg": "count", "window": "6h"},
            {
                "name": "value_sum_6h",
                "kind": "aggregate",
                "agg": "sum",
                "column": "value",
                "window": "6h",
            },
        ],
    }
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--entities", type=int, default=ENTITIES)
    parser.add_argument("--repeats", type=int, default=REPEATS, help="runs of each side")
    arguments = parser.parse_args()
    rows, entities, repeats = arguments.rows, arguments.entities, arguments.repeats

    print(f"generating {rows:,} rows over {entities:,} entities (seed {SEED}) ...", flush=True)
    events = synthetic_events(rows, entities)
    events_pandas = events.to_pandas()
    # pandas' own unit: Timedelta arithmetic and merge_asof keys are nanoseconds.
    events_pandas["ts"] = events_pandas["ts"].dt.as_unit("ns")
    print(f"features: {', '.join(f.name for f in SPEC.features)}")

    polars_runs = []
    for run in range(1, repeats + 1):
        start = time.perf_counter()
        by_polars = compute_features(SPEC, events.lazy())
        polars_runs.append(time.perf_counter() - start)
        print(f"polars engine, run {run}: {polars_runs[-1]:.2f} s", flush=True)
    del events
    gc.collect()

    pandas_runs = []
    for run in range(1, repeats + 1):
        start = time.perf_counter()
        by_pandas = pandas_features(events_pandas)
        pandas_runs.append(time.perf_counter() - start)
        print(f"pandas by hand, run {run}: {pandas_runs[-1]:.2f} s", flush=True)
    del events_pandas
    gc.collect()
    polars_s, pandas_s = min(polars_runs), min(pandas_runs)

    print()
    print("comparison, every row and column:")
    differing = compare(by_polars, by_pandas)
    values_match = differing == {}
    differing_values = sum(rows.size for rows in (differing or {}).values())
    polars_right = 0
    if differing:
        print()
        print("differing values against an exact recomputation:")
        polars_right = arbitrate(by_polars, by_pandas, differing)

    print()
    print(f"{'implementation':<16}{'best (s)':>10}{'rows':>13}{'columns':>9}  runs (s)")
    for label, best, frame, every in [
        ("polars engine", polars_s, by_polars.shape, polars_runs),
        ("pandas by hand", pandas_s, by_pandas.shape, pandas_runs),
    ]:
        listed = ", ".join(f"{r:.2f}" for r in every)
        print(f"{label:<16}{best:>10.2f}{frame[0]:>13,}{frame[1]:>9}  {listed}")
    ratio = pandas_s / polars_s
    print(f"pandas / polars (best runs): {ratio:.1f}x; values match: {values_match}")
    figures = {
        "rows": rows,
        "entities": entities,
        "polars_s": round(polars_s, 3),
        "pandas_s": round(pandas_s, 3),
        "polars_runs_s": [round(r, 3) for r in polars_runs],
        "pandas_runs_s": [round(r, 3) for r in pandas_runs],
        "ratio": round(ratio, 1),
        "values_match": values_match,
        "differing_values": differing_values,
        "differing_values_polars_exact": polars_right,
    }
    print(json.dumps(figures))
    return 0


def synthetic_events(rows: int, entities: int) -> pl.DataFrame:
    """An event log: `rows` rows spread evenly over `entities`, in time order."""
    rng = np.random.default_rng(SEED)
    entity_id = np.repeat(np.arange(entities, dtype=np.int64), -(-rows // entities))[:rows]
    # Gaps of at least a second keep each entity's times unique.
    gaps = 1 + rng.exponential(MEAN_GAP_SECONDS, rows).astype(np.int64)
    first = np.r_[True, entity_id[1:] != entity_id[:-1]]
    gaps[first] = rng.integers(0, 86_400, first.sum())
    starts = np.flatnonzero(first)
    elapsed = np.cumsum(gaps)
    # Each entity's clock restarts at its first row: subtract the sum before that row.
    offsets = elapsed - np.repeat(elapsed[starts] - gaps[starts], np.diff(np.r_[starts, rows]))
    ts = START + offsets.astype("timedelta64[s]")
    other = rng.gamma(2.0, 1.0, rows)
    other[rng.random(rows) < ZERO_SHARE] = 0.0
    order = np.argsort(ts, kind="stable")
    return pl.DataFrame(
        {
            "entity_id": entity_id[order],
            "ts": ts[order].astype("datetime64[us]"),
            "value": rng.normal(10.0, 3.0, rows)[order],
            "other": other[order],
        }
    ).with_columns(pl.col("ts").dt.replace_time_zone("UTC"))


def pandas_features(events: pd.DataFrame) -> pd.DataFrame:
    """The spec's features, the way they are written by hand in pandas."""
    df = events.sort_values(["entity_id", "ts"], ignore_index=True)
    by_entity = df.groupby("entity_id")

    df["value_mean_5"] = (
        by_entity["value"].rolling(5, min_periods=1).mean().reset_index(level=0, drop=True)
    )
    timed = df.set_index("ts").groupby("entity_id")
    df["value_std_6h"] = timed["value"].rolling("6h", min_periods=1).std().to_numpy()
    df["value_previous"] = by_entity["value"].shift(1)

    # The value as it was an hour before: latest at or before ts - 1h, at most 1h older.
    history = df[["entity_id", "ts", "value"]].rename(columns={"value": "value_1h_ago"})
    history["ts"] = history["ts"] + pd.Timedelta("1h")
    lagged = pd.merge_asof(
        df[["entity_id", "ts"]].reset_index().sort_values("ts"),
        history.sort_values("ts"),
        on="ts",
        by="entity_id",
        direction="backward",
        tolerance=pd.Timedelta("1h"),
    )
    df["value_1h_ago"] = lagged.set_index("index")["value_1h_ago"].sort_index()

    df["value_over_other"] = (df["value"] / df["other"]).where(df["other"] != 0)
    df["hour"] = df["ts"].dt.hour
    df["day_of_week"] = df["ts"].dt.dayofweek + 1
    df["events_6h"] = timed["value"].rolling("6h").count().to_numpy().astype("int64")
    df["value_sum_6h"] = timed["value"].rolling("6h").sum().to_numpy()
    return df


def compare(by_polars: pl.DataFrame, by_pandas: pd.DataFrame) -> dict[str, np.ndarray] | None:
    """The rows where the two differ, per column; None if the shapes differ. Prints a line
    for each column."""
    if by_polars.columns != list(by_pandas.columns) or by_polars.height != len(by_pandas):
        print(f"  shapes differ: {by_polars.shape} {by_pandas.shape}")
        print(f"  columns {by_polars.columns} / {list(by_pandas.columns)}")
        return None
    differing = {}
    for column in by_polars.columns:
        left, right = by_polars[column], by_pandas[column]
        detail = ""
        if column == "ts":
            same = left.dt.epoch("us").to_numpy() == right.dt.as_unit("us").astype("int64")
        elif left.dtype.is_float():
            a, b = left.to_numpy(), right.to_numpy(dtype="float64")  # null as NaN
            same = _close(a, b) | (np.isnan(a) & np.isnan(b))
            both = ~np.isnan(a) & ~np.isnan(b)
            worst = np.max(np.abs(a - b)[both]) if both.any() else 0.0
            detail = f"max abs diff {worst:.2e}, missing {int(np.isnan(a).sum()):,}"
        else:
            same = left.to_numpy() == right.to_numpy()
        rows = np.flatnonzero(~same)
        status = "ok" if rows.size == 0 else f"{rows.size:,} rows differ"
        print(f"  {column:<18}{status:<22}{detail}")
        if rows.size:
            differing[column] = rows
            print(f"    rows   {rows[:5].tolist()}")
            print(f"    polars {left.gather(rows[:5]).to_list()}")
            print(f"    pandas {right.iloc[rows[:5]].tolist()}")
    return differing


def _close(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Equal within the relative tolerance (absolute for values below 1); NaN is not close."""
    scale = np.maximum(1.0, np.maximum(np.abs(a), np.abs(b)))
    return np.abs(a - b) <= RELATIVE_TOLERANCE * scale


def arbitrate(by_polars: pl.DataFrame, by_pandas: pd.DataFrame, differing) -> int:
    """How many differing values polars has right, by an exact recomputation.

    Only time-window statistics can be recomputed here: from the entity's rows in the
    window (t - window, t], in extended precision and two passes. Prints each case.
    """
    features = {f.name: f for f in SPEC.features}
    entity = by_polars["entity_id"].to_numpy()
    ts = by_polars["ts"].dt.epoch("us").to_numpy()
    polars_right = 0
    for column, rows in differing.items():
        feature = features.get(column)
        window = getattr(feature, "window", None)
        if not isinstance(window, str):
            print(f"  {column}: {rows.size:,} differing values cannot be recomputed here")
            continue
        # A count has no column; any column gives the window's size.
        source = by_polars[feature.column or "value"].to_numpy().astype(np.longdouble)
        span = int(parse_duration(window).total_seconds() * 1_000_000)
        left, right = by_polars[column].to_numpy(), by_pandas[column].to_numpy(dtype="float64")
        for row in rows:
            first = row
            while first > 0 and entity[first - 1] == entity[row] and ts[first - 1] > ts[row] - span:
                first -= 1
            exact = _statistic(feature, source[first : row + 1])
            polars_ok = bool(_close(np.array([left[row]]), np.array([exact]))[0])
            polars_right += polars_ok
            print(
                f"  {column} row {row} ({row - first + 1} values in window): exact {exact!r}, "
                f"polars {float(left[row])!r}, pandas {float(right[row])!r} -> "
                f"{'polars' if polars_ok else 'NOT polars'} within tolerance"
            )
    return polars_right


def _statistic(feature, values: np.ndarray) -> float:
    stat = getattr(feature, "stat", None) or getattr(feature, "agg", None)
    if stat == "std":
        if values.size < 2:
            return float("nan")
        deviations = values - values.sum() / values.size
        return float(np.sqrt((deviations * deviations).sum() / (values.size - 1)))
    if stat == "count":
        return float(values.size)
    return float({"mean": np.mean, "sum": np.sum, "min": np.min, "max": np.max}[stat](values))


if __name__ == "__main__":
    sys.exit(main())
