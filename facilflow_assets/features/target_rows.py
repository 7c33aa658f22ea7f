"""The rows a use case predicts for (its target model), with their label and prediction time."""

import polars as pl

from facilflow_assets.feature_spec import parse_duration
from facilflow_assets.use_case import TargetSpec, UseCase
from resources import StorageResource

EVENT_TIME = "event_timestamp"  # the prediction time Feast joins features as of


class TargetDataError(ValueError):
    """The target model lacks what the use case reads from it."""


def target_rows(storage: StorageResource, use_case: UseCase) -> pl.DataFrame:
    """Every row of the target model, checked for the columns the use case names."""
    target = use_case.target
    rows = storage.read_warehouse(target.model)
    missing = [c for c in read_columns(target) if c not in rows.columns]
    if missing:
        raise TargetDataError(
            f"use case '{use_case.use_case}': the target model {target.model} has no column "
            f"{', '.join(repr(c) for c in missing)} (it has {', '.join(rows.columns)})"
        )
    return rows


def read_columns(target: TargetSpec) -> list[str]:
    """The target model's columns the use case reads: keys, time, label and filters."""
    label = target.label
    named = [*target.keys, target.time, label.column, *label.group_by]
    return list(dict.fromkeys([*named, *(f.column for f in target.where)]))


def predicted(rows: pl.DataFrame, target: TargetSpec) -> pl.DataFrame:
    """The rows passing the target's filters: those a model predicts for."""
    if not target.where:
        return rows
    return rows.filter(pl.all_horizontal(f.test(pl.col(f.column)) for f in target.where))


def labelled_rows(storage: StorageResource, use_case: UseCase) -> pl.DataFrame:
    """The predicted rows whose label is known, with the label as a column of its name."""
    rows = predicted(with_label(target_rows(storage, use_case), use_case.target), use_case.target)
    labelled = rows.filter(pl.col(use_case.label).is_not_null())
    if labelled.is_empty():
        label = use_case.target.label
        hint = f" (no row has a later row {label.ahead} after it)" if label.ahead else ""
        filtered = " that passes the target's filters" if use_case.target.where else ""
        raise TargetDataError(
            f"use case '{use_case.use_case}': no row of {use_case.target.model}{filtered} has "
            f"a value of the label '{use_case.label}'{hint}"
        )
    return labelled


def with_label(rows: pl.DataFrame, target: TargetSpec) -> pl.DataFrame:
    """`rows` with the label: the column itself, or read `ahead` or aggregated over the
    next window, then compared."""
    label = target.label
    value = pl.col(label.column)
    if label.ahead is not None:
        later = rows.select(
            *target.keys,
            (pl.col(target.time) - parse_duration(label.ahead)).alias(target.time),
            pl.col(label.column).alias(_LABEL_VALUE),
        ).unique([*target.keys, target.time], keep="first")
        rows = rows.join(later, on=[*target.keys, target.time], how="left")
        value = pl.col(_LABEL_VALUE)
    elif label.over_next is not None:
        rows = (
            rows.with_row_index(_ROW)
            .sort(target.time)
            .with_columns(
                _next_window(getattr(pl.col(label.column), label.agg)(), target).alias(
                    _LABEL_VALUE
                ),
                _next_window(pl.col(label.column).count(), target).alias(_WINDOW_ROWS),
            )
            .sort(_ROW)
            .drop(_ROW)
        )
        # No value in the window (the data's end, a quiet hour): no label, even for a sum.
        value = pl.when(pl.col(_WINDOW_ROWS) > 0).then(pl.col(_LABEL_VALUE))
    if label.comparisons():
        value = pl.when(value.is_null()).then(None).otherwise(label.test(value).cast(pl.Int8))
    return rows.with_columns(value.alias(label.output)).drop(
        _LABEL_VALUE, _WINDOW_ROWS, strict=False
    )


def _next_window(aggregate: pl.Expr, target: TargetSpec) -> pl.Expr:
    """`aggregate` over each row's next window, (time, time + over_next], per group; the
    frame must be sorted by time."""
    label = target.label
    window = aggregate.rolling(index_column=target.time, period=label.over_next or "", offset="0m")
    return window.over(label.group_by or target.keys)


_LABEL_VALUE, _WINDOW_ROWS, _ROW = "__label_value", "__window_rows", "__row"


def entity_frame(rows: pl.DataFrame, target: TargetSpec, lead_minutes: int, *extra: str):
    """One row per prediction: the keys, the prediction time (`lead_minutes` before the
    row's time), and the `extra` columns."""
    return rows.select(
        *target.keys,
        (pl.col(target.time) - pl.duration(minutes=lead_minutes)).alias(EVENT_TIME),
        *extra,
    )


def rows_of_day(storage: StorageResource, use_case: UseCase, day: str) -> pl.DataFrame:
    """The target rows whose time falls on `day` in the use case's calendar time zone."""
    local_day = (
        pl.col(use_case.target.time).dt.convert_time_zone(use_case.calendar.time_zone).dt.date()
    )
    rows = predicted(target_rows(storage, use_case), use_case.target)
    return rows.filter(local_day == pl.lit(day).str.to_date())


def latest_keys(storage: StorageResource, use_case: UseCase) -> dict[str, str]:
    """The keys of the latest complete target row: a request the endpoint must answer (its
    keys are strings, as the endpoint takes them)."""
    target = use_case.target
    rows = predicted(target_rows(storage, use_case), target)
    rows = rows.sort(target.time).select(target.keys).drop_nulls()
    if rows.is_empty():
        raise TargetDataError(f"the target model {target.model} has no row with every key")
    return rows.row(-1, named=True)
