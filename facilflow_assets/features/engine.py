"""Compiles a feature table spec into a polars lazy query.

Rows are ordered by entity and time, then features are added in three passes: window and
calendar expressions over each entity, as-of lags by duration (joins), and ratios, which
may read any column computed before them.
"""

import polars as pl

from facilflow_assets.features.spec import (
    AggregateFeature,
    ColumnType,
    FeatureTableSpec,
    LagFeature,
    RatioFeature,
    RollingFeature,
    TimeFeature,
    parse_duration,
)

POLARS_TYPES: dict[ColumnType, pl.DataType] = {
    "string": pl.String(),
    "int": pl.Int64(),
    "float": pl.Float64(),
    "bool": pl.Boolean(),
    "timestamp": pl.Datetime("us", "UTC"),
}


class FeatureDataError(ValueError):
    """Source data that does not match the columns a feature table spec declares."""


def check_source(spec: FeatureTableSpec, schema: pl.Schema) -> None:
    """Every declared source column exists with a compatible type, or FeatureDataError."""
    for column, declared in spec.source.columns.items():
        if column not in schema:
            raise FeatureDataError(
                f"table '{spec.name}': source '{spec.source.model}' has no column '{column}'"
            )
        actual = schema[column]
        compatible = {
            "string": actual == pl.String,
            "int": actual.is_integer(),
            "float": actual.is_numeric(),
            "bool": actual == pl.Boolean or actual.is_integer(),
            "timestamp": isinstance(actual, pl.Datetime),
        }[declared]
        if not compatible:
            raise FeatureDataError(
                f"table '{spec.name}': column '{column}' of '{spec.source.model}' is {actual}, "
                f"but the spec declares {declared}"
            )


def compute_features(spec: FeatureTableSpec, source: pl.LazyFrame) -> pl.LazyFrame:
    """The feature table of `spec` computed from `source`, one row per source row."""
    keys, ts = spec.source.entity, spec.timestamp_column
    frame = source.select([pl.col(c).cast(POLARS_TYPES[t]) for c, t in spec.source.columns.items()])
    if spec.source.timestamp is None:
        frame = frame.with_columns(
            pl.lit(spec.source.static_as_of).cast(POLARS_TYPES["timestamp"]).alias(ts)
        )
    # Every column orders the rows, so tied timestamps are processed the same way each run.
    frame = frame.sort([*keys, ts, *(c for c in spec.source.columns if c not in (*keys, ts))])
    for feature in spec.features:
        frame = _add(frame, feature, keys, ts)
    outputs = spec.output_types()
    # One row per entity and time, so a point-in-time lookup has one answer: the last of
    # tied rows, which has seen all of them.
    return frame.unique(subset=[*keys, ts], keep="last", maintain_order=True).select(
        [pl.col(c).cast(POLARS_TYPES[t]) for c, t in outputs.items()]
    )


def _add(frame: pl.LazyFrame, feature, keys: list[str], ts: str) -> pl.LazyFrame:
    if isinstance(feature, LagFeature) and feature.by is not None:
        return _lag_by_duration(frame, feature, keys, ts)
    return frame.with_columns(_expression(feature, keys, ts).alias(feature.name))


def _expression(feature, keys: list[str], ts: str) -> pl.Expr:
    match feature:
        case RollingFeature(window=int(rows)):
            column = pl.col(feature.column).cast(pl.Float64)
            return getattr(column, f"rolling_{feature.stat}")(rows, min_samples=1).over(keys)
        case RollingFeature(window=str(span)):
            column = pl.col(feature.column).cast(pl.Float64)
            rolling = getattr(column, f"rolling_{feature.stat}_by")
            return rolling(ts, window_size=span, min_samples=1).over(keys)
        case LagFeature(steps=int(steps)):
            return pl.col(feature.column).shift(steps).over(keys)
        case TimeFeature():
            local = pl.col(feature.column).dt.convert_time_zone(feature.time_zone)
            return {
                "hour": local.dt.hour(),
                "day_of_week": local.dt.weekday(),
                "is_weekend": local.dt.weekday() >= 6,
                "month": local.dt.month(),
            }[feature.part]
        case AggregateFeature():
            counted = (
                pl.col(feature.column).cast(pl.Float64).fill_null(0.0)
                if feature.agg == "sum"
                else (pl.col(feature.column) if feature.column else pl.col(ts)).is_not_null()
            )
            window = counted.cast(pl.Float64).rolling_sum_by(ts, window_size=feature.window)
            return window.over(feature.group_by or keys)
        case RatioFeature():
            numerator = pl.col(feature.numerator).cast(pl.Float64)
            denominator = pl.col(feature.denominator).cast(pl.Float64)
            return (
                pl.when(denominator == 0)
                .then(pl.lit(feature.on_zero, dtype=pl.Float64))
                .otherwise(numerator / denominator)
            )
    raise TypeError(f"no expression for feature kind {type(feature).__name__}")


def _lag_by_duration(frame: pl.LazyFrame, feature: LagFeature, keys: list[str], ts: str):
    """The value as it was `by` before each row: the latest one at or before t - by.

    Values older than 2 x `by` before the row count as missing rather than stale.
    """
    offset = parse_duration(feature.by)
    history = frame.select(
        *keys,
        (pl.col(ts) + offset).alias("__lagged_at"),
        pl.col(feature.column).alias(feature.name),
    ).sort([*keys, "__lagged_at"])
    return frame.join_asof(
        history,
        left_on=ts,
        right_on="__lagged_at",
        by=keys,
        strategy="backward",
        tolerance=offset,
        check_sortedness=False,
    ).drop("__lagged_at")
