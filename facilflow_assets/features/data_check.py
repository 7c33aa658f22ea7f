"""A use case file checked against the warehouse, in seconds, before any asset runs.

Every model the file reads exists, with each declared column of a compatible type; the
target's keys are text without nulls (requests send them as text); the label exists and,
for a binary task, is 0/1 with both classes (numeric for a regression); each split of the
calendar holds labelled rows, both classes in training. Each problem names the field of
the file it comes from; the facts (rows and positive share per split) say what the data
holds when there is none.
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time

import polars as pl

from facilflow_assets.feature_spec import ColumnType
from facilflow_assets.features.engine import compatible
from facilflow_assets.features.target_rows import predicted, with_label
from facilflow_assets.use_case import LabelSpec, RowFilter, UseCase
from resources import StorageResource


@dataclass(frozen=True)
class DataProblem:
    field: str  # where in the file: `tables.weather_hourly.source.columns.temperature_f`
    problem: str


@dataclass
class DataCheck:
    problems: list[DataProblem] = field(default_factory=list)
    facts: dict[str, dict[str, float]] = field(default_factory=dict)  # per split

    def add(self, where: str, problem: str) -> None:
        self.problems.append(DataProblem(where, problem))


def check_data(use_case: UseCase, storage: StorageResource) -> DataCheck:
    """Every problem of `use_case` against the warehouse of `storage`, and what its data
    holds per split."""
    check = DataCheck()
    models = storage.warehouse_models()
    if not models:
        check.add("target.model", f"no warehouse at {storage.warehouse_path}; build it first")
        return check
    read: dict[str, pl.DataFrame] = {}  # several tables may read one model

    def rows_of(model: str) -> pl.DataFrame:
        if model not in read:
            read[model] = storage.read_warehouse(model)
        return read[model]

    for table in use_case.tables:
        where = f"tables.{table.name}.source"
        if _exists(check, f"{where}.model", table.source.model, models):
            schema = rows_of(table.source.model).schema
            _check_columns(check, where, table.source.model, table.source.columns, schema)
    _check_target_model(check, use_case, models, rows_of)
    return check


class UseCaseDataError(ValueError):
    """The warehouse's data does not fit the use case file; one problem a line."""


def require_fitting_target(use_case: UseCase, storage: StorageResource) -> None:
    """Fail, one problem a line naming the file's field, unless the target model's data
    fits the file: what the first assets check before minutes of work on a wrong file."""
    check = DataCheck()
    _check_target_model(check, use_case, storage.warehouse_models(), storage.read_warehouse)
    if check.problems:
        raise UseCaseDataError(
            f"the warehouse's data does not fit the use case file {use_case.use_case}.yaml "
            "(`facilflow use-cases check FILE --data` says the same):\n"
            + "\n".join(f"{use_case.use_case}.yaml: {p.field}: {p.problem}" for p in check.problems)
        )


def _check_target_model(check: DataCheck, use_case: UseCase, models: list[str], rows_of) -> None:
    target = use_case.target
    if _exists(check, "target.model", target.model, models):
        _check_target(check, use_case, rows_of(target.model))


def _exists(check: DataCheck, where: str, model: str, models: list[str]) -> bool:
    if model in models:
        return True
    check.add(where, f"no model '{model}' in the warehouse (it has {', '.join(models)})")
    return False


def _check_columns(
    check: DataCheck,
    where: str,
    model: str,
    columns: dict[str, ColumnType],
    schema: pl.Schema,
) -> None:
    for column, declared in columns.items():
        if column not in schema:
            check.add(f"{where}.columns.{column}", f"'{model}' has no column '{column}'")
        elif not compatible(declared, schema[column]):
            check.add(
                f"{where}.columns.{column}",
                f"declared {declared}, but '{column}' of '{model}' is {schema[column]}",
            )


def _check_target(check: DataCheck, use_case: UseCase, rows: pl.DataFrame) -> None:
    target, schema = use_case.target, rows.schema
    for key in target.keys:
        if key not in schema:
            check.add(f"target.keys.{key}", f"'{target.model}' has no column '{key}'")
        elif schema[key] != pl.String:
            check.add(f"target.keys.{key}", f"a key must be text, but '{key}' is {schema[key]}")
        elif nulls := rows[key].null_count():
            check.add(f"target.keys.{key}", f"{nulls:,} of {rows.height:,} rows have no '{key}'")
    if target.time not in schema or not isinstance(schema[target.time], pl.Datetime):
        found = schema.get(target.time)
        check.add("target.time", f"'{target.time}' is not a timestamp column ({found or 'absent'})")
        return
    places = {
        "target.label.column": [target.label.column],
        "target.label.group_by": target.label.group_by,
        "target.where": [f.column for f in target.where],
    }
    absent = [
        (where, column)
        for where, columns in places.items()
        for column in columns
        if column not in schema
    ]
    for where, column in absent:
        check.add(where, f"'{target.model}' has no column '{column}'")
    if absent:
        return
    compared: list[tuple[str, RowFilter | LabelSpec]] = [
        (f"target.where.{f.column}", f) for f in target.where
    ]
    if target.label.over_next is None:
        compared.append(("target.label", target.label))
    mistyped = [
        (where, problem)
        for where, test in compared
        if (problem := _comparison_mistyped(test, schema[test.column]))
    ]
    for where, problem in mistyped:
        check.add(where, problem)
    if mistyped:
        return
    rows = predicted(with_label(rows, target), target)
    if rows.is_empty():
        check.add("target.where", f"no row of '{target.model}' passes the filters")
        return
    label = rows[use_case.label]
    if use_case.task == "binary":
        values = label.drop_nulls().unique()
        if not values.is_in([0, 1]).all():
            found = (
                f"values from {values.min()} to {values.max()}"
                if values.dtype.is_numeric()
                else ", ".join(str(v) for v in values.sort().head(5).to_list())
            )
            check.add(
                "target.label",
                f"a binary label must be 0 or 1; '{use_case.label}' has {found} (derive one "
                "with a comparison such as 'above', or use task: regression)",
            )
            return
    elif not label.dtype.is_numeric():
        check.add("target.label", f"a regression's label must be numeric; it is {label.dtype}")
        return
    _check_splits(check, use_case, rows[target.time], label)


def _comparison_mistyped(test: RowFilter | LabelSpec, dtype: pl.DataType) -> str | None:
    """What is wrong with comparing a column of `dtype` as `test` does, if anything."""
    given = test.comparisons()
    if not given:
        return None
    if given != ["equals"]:
        if dtype.is_numeric():
            return None
        return f"'{given[0]}' compares numbers, but '{test.column}' is {dtype}"
    value = test.equals
    fits = (
        dtype == pl.Boolean
        if isinstance(value, bool)
        else dtype == pl.String
        if isinstance(value, str)
        else dtype.is_numeric()
    )
    return None if fits else f"'equals' gives {value!r}, but '{test.column}' is {dtype}"


def _check_splits(check: DataCheck, use_case: UseCase, times: pl.Series, label: pl.Series):
    splits, calendar = use_case.splits, use_case.calendar
    bounds = {
        "train": (splits.train_start, splits.validation_start, "splits.train_start"),
        "validation": (splits.validation_start, splits.holdout_start, "splits.validation_start"),
        "holdout": (splits.holdout_start, calendar.end, "splits.holdout_start"),
    }
    frame = pl.DataFrame({"time": times, "label": label}).drop_nulls()
    for split, (start, end, where) in bounds.items():
        inside = frame.filter(pl.col("time").is_between(_utc(start), _utc(end), closed="left"))[
            "label"
        ]
        facts: dict[str, float] = {"rows": inside.len()}
        if use_case.task == "binary" and inside.len():
            facts["positive_share"] = round(float(inside.cast(pl.Float64).to_numpy().mean()), 4)
        check.facts[split] = facts
        if not inside.len():
            model = use_case.target.model
            check.add(where, f"no labelled row of '{model}' in {split}, {start} to {end}")
        elif use_case.task == "binary" and inside.n_unique() < 2:
            check.add(where, f"{split} ({start} to {end}) holds one class of the label only")


def _utc(day: date) -> datetime:
    """Midnight UTC of `day`: where the training steps cut the splits."""
    return datetime.combine(day, time(), tzinfo=UTC)
