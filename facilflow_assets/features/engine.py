"""Compiles a feature table spec into a polars query.

Rows are ordered by entity and time. Time-window features and lags by duration then run on
one integer timeline on which each entity occupies its own stretch: entities are laid end
to end, separated by more than any window, so a window or a lag can never reach into
another entity. This is what lets them run as single vectorised passes instead of once per
entity. Ratios come last and may read any column computed before them.
"""

from datetime import datetime, timedelta

import polars as pl

from facilflow_assets.feature_spec import (
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
TIMELINE = "__timeline_us"
_INT64_LIMIT = 2**62


class FeatureDataError(ValueError):
    """Source data that does not match the columns a feature table spec declares."""


def check_source(spec: FeatureTableSpec, schema: pl.Schema) -> None:
    """Every declared source column exists with a compatible type, or FeatureDataError."""
    for column, declared in spec.source.columns.items():
        if column not in schema:
            raise FeatureDataError(
                f"table '{spec.name}': source '{spec.source.model}' has no column '{column}'"
            )
        if not compatible(declared, schema[column]):
            raise FeatureDataError(
                f"table '{spec.name}': column '{column}' of '{spec.source.model}' is "
                f"{schema[column]}, but the spec declares {declared}"
            )


def compatible(declared: ColumnType, actual: pl.DataType) -> bool:
    """Whether a warehouse column of type `actual` can be read as `declared`."""
    return {
        "string": actual == pl.String,
        "int": actual.is_integer(),
        "float": actual.is_numeric(),
        "bool": actual == pl.Boolean or actual.is_integer(),
        "timestamp": isinstance(actual, pl.Datetime),
    }[declared]


def compute_features(spec: FeatureTableSpec, source: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    """The feature table of `spec` from `source`: one row per entity and event time.

    Rows that share an entity and time become one, the last in source order, whose
    window features have seen all of them.
    """
    keys, ts = spec.source.entity, spec.timestamp_column
    frame = source.lazy().select(
        [pl.col(c).cast(POLARS_TYPES[t]) for c, t in spec.source.columns.items()]
    )
    if spec.source.timestamp is None:
        as_of = pl.lit(spec.source.static_as_of).cast(POLARS_TYPES["timestamp"])
        frame = frame.with_columns(as_of.alias(ts))
    # Two stable sorts give (entity, time) order faster than one sort on both.
    rows = frame.collect(engine="in-memory").sort(ts).sort(keys, maintain_order=True)
    timeline = _Timeline.for_rows(rows, keys, ts, _longest_span(spec))
    computed = rows.lazy()
    if timeline.column:
        computed = computed.with_columns(timeline.expression())
    for feature in spec.features:
        computed = _add(computed, feature, timeline)
    outputs = spec.output_types()
    # The in-memory engine: polars' default streaming engine is slower for window functions.
    return (
        last_per_group(computed, [*keys, ts])
        .select([pl.col(c).cast(POLARS_TYPES[t]) for c, t in outputs.items()])
        .collect(engine="in-memory")
    )


def last_per_group(sorted_rows: pl.LazyFrame, columns: list[str]) -> pl.LazyFrame:
    """The last row of each run of equal `columns`, in rows sorted by them."""
    last = pl.any_horizontal([pl.col(c).ne_missing(pl.col(c).shift(-1)) for c in columns])
    return sorted_rows.filter(last.fill_null(True))


def _longest_span(spec: FeatureTableSpec) -> timedelta:
    """The longest stretch of time any feature looks back over."""
    spans = [timedelta(0)]
    for feature in spec.features:
        if isinstance(feature, RollingFeature | AggregateFeature) and isinstance(
            feature.window, str
        ):
            spans.append(parse_duration(feature.window))
        if isinstance(feature, LagFeature) and feature.by:
            spans.append(2 * parse_duration(feature.by))
    return max(spans)


class _Timeline:
    """Where time-window features look: a shared integer timeline, or each entity's own."""

    def __init__(self, keys: list[str], ts: str, stride: int | None, start=None):
        self.keys, self.ts, self.stride, self.start = keys, ts, stride, start
        self.column = TIMELINE if stride is not None else None

    @classmethod
    def for_rows(
        cls, rows: pl.DataFrame, keys: list[str], ts: str, longest: timedelta
    ) -> "_Timeline":
        if rows.is_empty() or longest <= timedelta(0):
            return cls(keys, ts, None)
        start, end = rows[ts].min(), rows[ts].max()
        if not isinstance(start, datetime) or not isinstance(end, datetime):
            raise TypeError(f"the time column {ts} runs from {start!r} to {end!r}, not times")
        stride = _microseconds(end - start) + 2 * _microseconds(longest) + 1
        entities = rows.select(pl.struct(keys).rle_id().max()).item() + 1
        if entities * stride >= _INT64_LIMIT:
            return cls(keys, ts, None)  # too long a timeline: window per entity instead
        return cls(keys, ts, stride, start)

    def expression(self) -> pl.Expr:
        offset = (pl.col(self.ts) - pl.lit(self.start)).dt.total_microseconds()
        return (offset + pl.struct(self.keys).rle_id().cast(pl.Int64) * self.stride).alias(TIMELINE)

    def rolling(self, values: pl.Expr, stat: str, span: str) -> pl.Expr:
        if self.column is None:
            return getattr(values, f"rolling_{stat}_by")(self.ts, window_size=span).over(self.keys)
        window = f"{_microseconds(parse_duration(span))}i"
        return getattr(values, f"rolling_{stat}_by")(self.column, window_size=window)


def _microseconds(span: timedelta) -> int:
    return span // timedelta(microseconds=1)


def _add(frame: pl.LazyFrame, feature, timeline: _Timeline) -> pl.LazyFrame:
    if isinstance(feature, LagFeature) and feature.by is not None:
        return _lag_by_duration(frame, feature, timeline)
    return frame.with_columns(_expression(feature, timeline).alias(feature.name))


def _expression(feature, timeline: _Timeline) -> pl.Expr:
    keys = timeline.keys
    match feature:
        case RollingFeature(window=int(rows)):
            column = pl.col(feature.column).cast(pl.Float64)
            return getattr(column, f"rolling_{feature.stat}")(rows, min_samples=1).over(keys)
        case RollingFeature(window=str(span)):
            column = pl.col(feature.column).cast(pl.Float64)
            return timeline.rolling(column, feature.stat, span)
        case LagFeature(steps=int(steps)):
            return pl.col(feature.column).shift(steps).over(keys)
        case TimeFeature():
            local = pl.col(feature.column)  # timestamps are UTC already
            if feature.time_zone != "UTC":
                local = local.dt.convert_time_zone(feature.time_zone)
            return {
                "hour": local.dt.hour(),
                "day_of_week": local.dt.weekday(),
                "is_weekend": local.dt.weekday() >= 6,
                "month": local.dt.month(),
            }[feature.part]
        case AggregateFeature():
            if feature.agg == "sum":
                if feature.column is None:
                    raise ValueError(f"aggregate feature {feature.name}: a sum needs a column")
                counted = pl.col(feature.column).cast(pl.Float64).fill_null(0.0)
            else:
                counted = (
                    (pl.col(feature.column) if feature.column else pl.col(timeline.ts))
                    .is_not_null()
                    .cast(pl.Float64)
                )
            if feature.group_by is not None and feature.group_by != keys:
                # Another grouping than the entity (none: the whole table) has its own windows.
                window = counted.rolling_sum_by(timeline.ts, window_size=feature.window)
                return window.over(feature.group_by) if feature.group_by else window
            return timeline.rolling(counted, "sum", feature.window)
        case RatioFeature():
            numerator = pl.col(feature.numerator).cast(pl.Float64)
            denominator = pl.col(feature.denominator).cast(pl.Float64)
            return (
                pl.when(denominator == 0)
                .then(pl.lit(feature.on_zero, dtype=pl.Float64))
                .otherwise(numerator / denominator)
            )
    raise TypeError(f"no expression for feature kind {type(feature).__name__}")


def _lag_by_duration(frame: pl.LazyFrame, feature: LagFeature, timeline: _Timeline):
    """The value as it was `by` before each row: the latest one at or before t - by.

    Values older than 2 x `by` before the row count as missing rather than stale.
    """
    if feature.by is None:
        raise ValueError(f"lag feature {feature.name}: a lag by duration needs 'by'")
    offset = parse_duration(feature.by)
    lagged = "__lagged_at"
    if timeline.column is None:
        keys, on, shift, tolerance = timeline.keys, timeline.ts, offset, offset
    else:
        keys, on = [], timeline.column
        shift = tolerance = _microseconds(offset)
    history = frame.select(
        *keys,
        (pl.col(on) + shift).alias(lagged),
        pl.col(feature.column).alias(feature.name),
    )
    return frame.join_asof(
        history,
        left_on=on,
        right_on=lagged,
        by=keys or None,
        strategy="backward",
        tolerance=tolerance,
        check_sortedness=False,
    ).drop(lagged)
