"""The declarative feature specification a use case writes as data (YAML).

Every kind the platform offers is here: rolling statistics, lags, ratios, time parts and
windowed aggregates. A spec is checked when it is loaded, so a mistake stops the code
location from loading with a message naming the file, the table, the feature and the field.
"""

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal, NoReturn, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

ColumnType = Literal["string", "int", "float", "bool", "timestamp"]
NUMERIC_TYPES = {"int", "float", "bool"}
_DURATION = re.compile(r"^(\d+)(m|h|d)$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"  # tables, features, views, services: safe everywhere
Spec = TypeVar("Spec", bound=BaseModel)


class FeatureSpecError(ValueError):
    """A feature spec that cannot be computed, with where the mistake is."""


def parse_duration(text: str) -> timedelta:
    """`30m`, `6h` or `7d` as a timedelta; anything else raises ValueError."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration like '30m', '6h' or '7d'")
    return timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Feature(StrictModel):
    name: str = Field(pattern=NAME_PATTERN, description="Output column name.")
    description: str = ""

    def inputs(self) -> dict[str, str]:
        """Field name to the column it reads."""
        return {}


class RollingFeature(_Feature):
    """A statistic over the entity's last `window` rows (an integer) or time span ('6h')."""

    kind: Literal["rolling"]
    column: str
    stat: Literal["mean", "std", "min", "max"]
    window: int | str

    def inputs(self) -> dict[str, str]:
        return {"column": self.column}


class LagFeature(_Feature):
    """The entity's value `steps` rows back, or as it was `by` ('1h') before the row."""

    kind: Literal["lag"]
    column: str
    steps: int | None = None
    by: str | None = None

    def inputs(self) -> dict[str, str]:
        return {"column": self.column}


class RatioFeature(_Feature):
    """numerator / denominator; `on_zero` (null by default) where the denominator is 0."""

    kind: Literal["ratio"]
    numerator: str
    denominator: str
    on_zero: float | None = Field(default=None, allow_inf_nan=False)

    def inputs(self) -> dict[str, str]:
        return {"numerator": self.numerator, "denominator": self.denominator}


class TimeFeature(_Feature):
    """A calendar part of a timestamp column, in `time_zone` (UTC by default)."""

    kind: Literal["time"]
    column: str
    part: Literal["hour", "day_of_week", "is_weekend", "month"]
    time_zone: str = "UTC"

    def inputs(self) -> dict[str, str]:
        return {"column": self.column}


class AggregateFeature(_Feature):
    """Count of rows (or sum of `column`) over the trailing time `window` per `group_by`."""

    kind: Literal["aggregate"]
    agg: Literal["count", "sum"]
    column: str | None = None
    window: str
    group_by: list[str] | None = Field(
        default=None, description="Grouping columns; the table's entity by default."
    )

    def inputs(self) -> dict[str, str]:
        inputs = {"column": self.column} if self.column else {}
        return inputs | {f"group_by[{i}]": c for i, c in enumerate(self.group_by or [])}


Feature = Annotated[
    RollingFeature | LagFeature | RatioFeature | TimeFeature | AggregateFeature,
    Field(discriminator="kind"),
]


class SourceSpec(StrictModel):
    """The warehouse model a table is computed from, and the columns it reads."""

    model: str = Field(description="dbt model asset key, e.g. 'staging/stg_weather'.")
    entity: list[str] = Field(min_length=1, description="Entity key columns.")
    timestamp: str | None = Field(
        default=None, description="Event time column; omit for a static table."
    )
    static_as_of: datetime | None = Field(
        default=None, description="Event time given to every row of a static table."
    )
    columns: dict[str, ColumnType]


class TableExpectations(StrictModel):
    """What the table's asset checks hold it to."""

    max_null_share: dict[str, float] = Field(
        default_factory=lambda: {"default": 0.05},
        description="Largest share of nulls per column; 'default' covers the rest.",
    )
    ranges: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="Inclusive [min, max] per column."
    )
    max_staleness: str = Field(
        default="1d", description="How far the table's latest row may trail its source's."
    )

    def null_share_limit(self, column: str) -> float:
        return self.max_null_share.get(column, self.max_null_share.get("default", 0.05))


class FeatureTableSpec(StrictModel):
    name: str = Field(pattern=NAME_PATTERN)
    description: str
    source: SourceSpec
    keep: list[str] = Field(default_factory=list, description="Source columns kept as features.")
    features: list[Feature] = Field(default_factory=list)
    expect: TableExpectations = Field(default_factory=TableExpectations)

    def value_ranges(self) -> dict[str, tuple[float, float]]:
        """Declared ranges, plus those that follow from a feature's kind."""
        implied = {
            f.name: {"hour": (0, 23), "day_of_week": (1, 7), "month": (1, 12)}[f.part]
            for f in self.features
            if isinstance(f, TimeFeature) and f.part != "is_weekend"
        }
        implied |= {
            f.name: (0, float("inf"))
            for f in self.features
            if isinstance(f, AggregateFeature) and f.agg == "count"
        }
        return implied | dict(self.expect.ranges)

    @property
    def timestamp_column(self) -> str:
        return self.source.timestamp or "valid_from"

    def output_types(self) -> dict[str, ColumnType]:
        """Every output column with its type: entity, timestamp, kept columns, features."""
        types: dict[str, ColumnType] = {c: self.source.columns[c] for c in self.source.entity}
        types[self.timestamp_column] = "timestamp"
        types |= {c: self.source.columns[c] for c in self.keep}
        types |= {f.name: _output_type(f, {**self.source.columns, **types}) for f in self.features}
        return types

    @model_validator(mode="after")
    def _check(self) -> "FeatureTableSpec":
        _check_table(self)
        return self


class FeatureSpec(StrictModel):
    use_case: str
    tables: list[FeatureTableSpec]

    def table(self, name: str) -> FeatureTableSpec:
        return next(t for t in self.tables if t.name == name)

    @model_validator(mode="after")
    def _unique_tables(self) -> "FeatureSpec":
        names = [t.name for t in self.tables]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"table '{duplicated[0]}' is defined more than once")
        return self


def _output_type(feature, known: dict[str, ColumnType]) -> ColumnType:
    match feature:
        case TimeFeature(part="is_weekend"):
            return "bool"
        case TimeFeature() | AggregateFeature(agg="count"):
            return "int"
        case LagFeature():
            return known[feature.column]
        case _:
            return "float"


def _fail(table: str, feature: str | None, field: str, problem: str) -> NoReturn:
    where = f"table '{table}'" + (f", feature '{feature}'" if feature else "")
    raise ValueError(f"{where}, field '{field}': {problem}")


def _check_table(table: FeatureTableSpec) -> None:
    source = table.source
    for field, columns in [("source.entity", source.entity), ("keep", table.keep)]:
        for column in columns:
            if column not in source.columns:
                _fail(table.name, None, field, f"unknown column '{column}'")
    if source.timestamp is None and source.static_as_of is None:
        _fail(table.name, None, "source.timestamp", "give a timestamp column or static_as_of")
    if source.timestamp is not None and source.columns.get(source.timestamp) != "timestamp":
        _fail(table.name, None, "source.timestamp", f"'{source.timestamp}' is not a timestamp")

    known: dict[str, ColumnType] = dict(source.columns)
    outputs = {*source.entity, *table.keep, *(f.name for f in table.features)}
    for field, columns in [
        ("expect.max_null_share", set(table.expect.max_null_share) - {"default"}),
        ("expect.ranges", set(table.expect.ranges)),
    ]:
        for column in sorted(columns - outputs):
            _fail(table.name, None, field, f"unknown column '{column}'")
    _check_span(table.name, None, "expect.max_staleness", table.expect.max_staleness)
    taken = set(source.entity) | set(table.keep) | {table.timestamp_column}
    for feature in table.features:
        if feature.name in taken:
            _fail(table.name, feature.name, "name", "duplicate output name")
        for field, column in feature.inputs().items():
            if column not in known:
                _fail(table.name, feature.name, field, f"unknown column '{column}'")
        _check_feature(table, feature, known)
        known[feature.name] = _output_type(feature, known)
        taken.add(feature.name)


def _check_feature(table: FeatureTableSpec, feature, known: dict[str, ColumnType]) -> None:
    name = table.name
    if isinstance(feature, RollingFeature | AggregateFeature):
        if isinstance(feature.window, int):  # a rolling feature's count of rows
            if feature.window <= 0:
                _fail(name, feature.name, "window", f"must be positive, got {feature.window}")
        else:
            _check_span(name, feature.name, "window", feature.window)
            _needs_timestamp(table, feature.name, "window")
    if isinstance(feature, LagFeature):
        if (feature.steps is None) == (feature.by is None):
            _fail(name, feature.name, "steps", "give exactly one of 'steps' and 'by'")
        if feature.steps is not None and feature.steps <= 0:
            _fail(name, feature.name, "steps", f"must be positive, got {feature.steps}")
        if feature.by is not None:
            _check_span(name, feature.name, "by", feature.by)
            _needs_timestamp(table, feature.name, "by")
    if isinstance(feature, AggregateFeature) and feature.agg == "sum" and feature.column is None:
        _fail(name, feature.name, "column", "a sum needs a column")
    if isinstance(feature, TimeFeature) and known[feature.column] != "timestamp":
        _fail(name, feature.name, "column", f"'{feature.column}' is not a timestamp")
    numeric_fields = {
        RollingFeature: ["column"],
        AggregateFeature: ["column"],
        RatioFeature: ["numerator", "denominator"],
    }.get(type(feature), [])
    for field in numeric_fields:
        column = getattr(feature, field)
        if column is not None and known[column] not in NUMERIC_TYPES:
            _fail(name, feature.name, field, f"'{column}' is {known[column]}, not numeric")


def _needs_timestamp(table: FeatureTableSpec, feature: str, field: str) -> None:
    if table.source.timestamp is None:
        _fail(table.name, feature, field, "a time window needs a source timestamp")


def _check_span(table: str, feature: str | None, field: str, span: str) -> None:
    try:
        duration = parse_duration(span)
    except ValueError as exc:
        _fail(table, feature, field, str(exc))
    if duration <= timedelta(0):
        _fail(table, feature, field, f"must be positive, got '{span}'")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (which plain YAML
    loading settles silently by keeping the last one)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key '{key}' is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_spec_file(path: Path, spec_type: type[Spec]) -> Spec:
    """Read a YAML file as `spec_type`; every error names the file and where in it."""
    try:
        document = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 - safe
    except yaml.YAMLError as exc:
        raise FeatureSpecError(f"{path}: not valid YAML: {exc}") from None
    try:
        return spec_type.model_validate(document)
    except ValidationError as exc:
        problems = [_describe(document, error) for error in exc.errors()]
        raise FeatureSpecError("\n".join(f"{path}: {problem}" for problem in problems)) from None


_CONTAINERS = {"tables": "table", "features": "feature", "on_demand": "on_demand"}


def _describe(document: object, error: ErrorDetails) -> str:
    """A pydantic error with list indexes replaced by the names of the tables and features."""
    message = str(error["msg"]).removeprefix("Value error, ")
    node, where, field = document, [], []
    for step in error["loc"]:
        if step in ("rolling", "lag", "ratio", "time", "aggregate"):
            continue  # the discriminated union's branch, not a place in the file
        if not field and where and isinstance(step, int) and where[-1] in _CONTAINERS:
            node = node[step] if isinstance(node, list) and step < len(node) else None
            label = node.get("name") if isinstance(node, dict) else None
            kind = _CONTAINERS[where.pop()]
            where.append(f"{kind} '{label}'" if label else f"{kind} #{step + 1}")
        elif not field and step in _CONTAINERS:
            node = node.get(step) if isinstance(node, dict) else None
            where.append(step)
        else:
            node = node.get(step) if isinstance(node, dict) else None
            field.append(f"[{step}]" if isinstance(step, int) else f".{step}")
    if field:
        where.append(f"field '{''.join(field).lstrip('.')}'")
    place = ", ".join(where)
    if not place or message.startswith(place):  # a check that names the place itself
        return message
    return f"{place}: {message}"
