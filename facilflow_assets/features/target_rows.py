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
    wanted = [*target.keys, target.time]
    if target.label.column not in wanted:
        wanted.append(target.label.column)
    missing = [c for c in wanted if c not in rows.columns]
    if missing:
        raise TargetDataError(
            f"use case '{use_case.use_case}': the target model {target.model} has no column "
            f"{', '.join(repr(c) for c in missing)} (it has {', '.join(rows.columns)})"
        )
    return rows


def labelled_rows(storage: StorageResource, use_case: UseCase) -> pl.DataFrame:
    """The rows whose label is known, with the label as a column of its output name."""
    rows = with_label(target_rows(storage, use_case), use_case.target)
    labelled = rows.filter(pl.col(use_case.label).is_not_null())
    if labelled.is_empty():
        label = use_case.target.label
        hint = f" (no row has a later row {label.ahead} after it)" if label.ahead else ""
        raise TargetDataError(
            f"use case '{use_case.use_case}': no row of {use_case.target.model} has a value "
            f"of the label '{use_case.label}'{hint}"
        )
    return labelled


def with_label(rows: pl.DataFrame, target: TargetSpec) -> pl.DataFrame:
    """`rows` with the label: the column itself, or read `ahead` and thresholded `above`."""
    label = target.label
    value = pl.col(label.column)
    if label.ahead is not None:
        later = rows.select(
            *target.keys,
            (pl.col(target.time) - parse_duration(label.ahead)).alias(target.time),
            pl.col(label.column).alias("_label_value"),
        ).unique([*target.keys, target.time], keep="first")
        rows = rows.join(later, on=[*target.keys, target.time], how="left")
        value = pl.col("_label_value")
    if label.above is not None:
        value = (value > label.above).cast(pl.Int8)
    return rows.with_columns(value.alias(label.output)).drop("_label_value", strict=False)


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
    rows = target_rows(storage, use_case)
    return rows.filter(local_day == pl.lit(day).str.to_date())


def latest_keys(storage: StorageResource, use_case: UseCase) -> dict[str, str]:
    """The keys of the latest complete target row: a request the endpoint must answer (its
    keys are strings, as the endpoint takes them)."""
    target = use_case.target
    rows = target_rows(storage, use_case).sort(target.time).select(target.keys).drop_nulls()
    if rows.is_empty():
        raise TargetDataError(f"the target model {target.model} has no row with every key")
    return rows.row(-1, named=True)
