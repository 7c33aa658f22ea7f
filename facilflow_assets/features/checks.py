"""Asset checks of a feature table, evaluated on the computed frame before it is written."""

from datetime import datetime

import dagster as dg
import polars as pl

from facilflow_assets.feature_spec import FeatureTableSpec, parse_duration
from facilflow_assets.features.engine import POLARS_TYPES

CHECK_NAMES = ("schema", "null_share", "value_ranges", "freshness")
# Sliding-window sums carry float round-off (0.02 / 0.0199999... = 1.0000000000000013).
RANGE_TOLERANCE = 1e-9


def check_specs(table: FeatureTableSpec, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    descriptions = {
        "schema": "Columns and types are exactly those the feature spec declares.",
        "null_share": "No column has more nulls than the spec allows.",
        "value_ranges": "Values lie in the ranges the spec declares or the feature kind implies.",
        "freshness": "The latest row trails the source's latest by at most max_staleness.",
    }
    return [
        dg.AssetCheckSpec(name, asset=key, description=descriptions[name], blocking=True)
        for name in CHECK_NAMES
    ]


def evaluate_checks(
    table: FeatureTableSpec, frame: pl.DataFrame, source_latest: object | None
) -> list[dg.AssetCheckResult]:
    return [
        _schema(table, frame),
        _null_share(table, frame),
        _value_ranges(table, frame),
        _freshness(table, frame, source_latest),
    ]


def _schema(table: FeatureTableSpec, frame: pl.DataFrame) -> dg.AssetCheckResult:
    expected = {c: POLARS_TYPES[t] for c, t in table.output_types().items()}
    actual = dict(frame.schema)
    problems = [
        f"{c}: expected {t}, found {actual.get(c, 'nothing')}"
        for c, t in expected.items()
        if actual.get(c) != t
    ]
    problems += [f"{c}: not in the spec" for c in actual if c not in expected]
    return dg.AssetCheckResult(
        check_name="schema",
        passed=not problems,
        metadata={"problems": dg.MetadataValue.json(problems), "columns": len(actual)},
    )


def _null_share(table: FeatureTableSpec, frame: pl.DataFrame) -> dg.AssetCheckResult:
    rows = max(frame.height, 1)
    shares = {c: frame[c].null_count() / rows for c in frame.columns}
    over = {
        c: round(share, 4)
        for c, share in shares.items()
        if share > table.expect.null_share_limit(c)
    }
    return dg.AssetCheckResult(
        check_name="null_share",
        passed=not over,
        metadata={
            "over_limit": dg.MetadataValue.json(over),
            "max_share": max(shares.values(), default=0.0),
        },
    )


def _value_ranges(table: FeatureTableSpec, frame: pl.DataFrame) -> dg.AssetCheckResult:
    outside: dict[str, int] = {}
    for column, (low, high) in table.value_ranges().items():
        values = frame[column].cast(pl.Float64)
        slack_low, slack_high = (RANGE_TOLERANCE * max(1.0, abs(b)) for b in (low, high))
        count = int(((values < low - slack_low) | (values > high + slack_high)).sum())
        if count:
            outside[column] = count
    return dg.AssetCheckResult(
        check_name="value_ranges",
        passed=not outside,
        metadata={"rows_outside": dg.MetadataValue.json(outside)},
    )


def _freshness(
    table: FeatureTableSpec, frame: pl.DataFrame, source_latest: object | None
) -> dg.AssetCheckResult:
    if table.source.timestamp is None:
        return dg.AssetCheckResult(
            check_name="freshness", passed=True, metadata={"note": "static table"}
        )
    latest = frame[table.timestamp_column].max()
    allowed = parse_duration(table.expect.max_staleness)
    lag = (
        source_latest - latest
        if isinstance(latest, datetime) and isinstance(source_latest, datetime)
        else None
    )
    return dg.AssetCheckResult(
        check_name="freshness",
        passed=lag is not None and lag <= allowed,
        metadata={
            "latest_row": str(latest),
            "source_latest_row": str(source_latest),
            "lag_seconds": lag.total_seconds() if lag is not None else -1.0,
        },
    )
