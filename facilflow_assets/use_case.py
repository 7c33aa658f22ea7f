"""A use case, written as data: one YAML file under `facilflow_assets/use_cases/`.

The file holds everything FacilFlow builds for the use case: its feature tables (the
feature spec), the Feast objects serving them, the rows a model predicts for and their
label, the baseline a candidate must beat, and the days scored in batch. Each tenant's
code location builds a whole lifecycle for every use case it lists.
"""

import zoneinfo
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import Field, model_validator

from facilflow_assets.feature_spec import (
    NAME_PATTERN,
    FeatureSpec,
    RatioFeature,
    StrictModel,
    load_spec_file,
    parse_duration,
)
from facilflow_assets.search_space import (
    DEFAULT_SEARCH_SPACE,
    SearchDimension,
    check_budget,
    check_search_space,
)

USE_CASES_DIR = Path(__file__).parent / "use_cases"
FEATURE_SEPARATOR = "__"  # Feast's full feature names: <view>__<feature>
# Fields of the endpoint's answer, which the label's name must not take.
ANSWER_FIELDS = {
    "request_id",
    "prediction",
    "model",
    "model_version",
    "role",
    "features_found",
    "features_expected",
}
# Columns batch scores carry beside the prediction, which `score` must not take.
SCORED_COLUMNS = {"model", "model_version"}
# Feature assets every use case has, whose names no feature table may take.
FEAST_ASSETS = {"feast_registry", "online_store", "training_set"}


class UseCaseError(ValueError):
    """A use case that does not exist or cannot be built, with where the mistake is."""


class Comparison(StrictModel):
    """A test of a column's value: at most one of the comparisons; null never passes."""

    above: float | None = Field(default=None, description="Strictly greater than this.")
    at_least: float | None = Field(default=None, description="Greater than or equal to this.")
    below: float | None = Field(default=None, description="Strictly less than this.")
    at_most: float | None = Field(default=None, description="Less than or equal to this.")
    between: tuple[float, float] | None = Field(
        default=None, description="Within [low, high], both ends included."
    )
    equals: float | str | bool | None = Field(default=None, description="Equal to this.")

    def comparisons(self) -> list[str]:
        return [name for name in COMPARISONS if getattr(self, name) is not None]

    def test(self, value: pl.Expr) -> pl.Expr:
        """Whether `value` passes the comparison given (which must be one)."""
        (name,) = self.comparisons()
        match name:
            case "above":
                return value > self.above
            case "at_least":
                return value >= self.at_least
            case "below":
                return value < self.below
            case "at_most":
                return value <= self.at_most
            case "between":
                low, high = self.between or (0.0, 0.0)
                return value.is_between(low, high, closed="both")
        return value == self.equals

    @model_validator(mode="after")
    def _one_comparison(self) -> "Comparison":
        given = self.comparisons()
        if len(given) > 1:
            raise ValueError(f"give one comparison, not {' and '.join(given)}")
        if self.between is not None and self.between[0] > self.between[1]:
            raise ValueError(f"field 'between': {list(self.between)} is not [low, high]")
        return self


COMPARISONS = ("above", "at_least", "below", "at_most", "between", "equals")


class RowFilter(Comparison):
    """Keep the target rows whose `column` passes the comparison."""

    column: str

    @model_validator(mode="after")
    def _compares(self) -> "RowFilter":
        if not self.comparisons():
            raise ValueError(f"filter on '{self.column}': give one of {', '.join(COMPARISONS)}")
        return self


class LabelSpec(Comparison):
    """The label: a column of the target model (0/1 for a binary task, an amount for a
    regression), or one derived from a column: read `ahead`, or aggregated over the next
    window (`over_next`), then made 0/1 by a comparison."""

    column: str = Field(description="Column of the target model the label is read from.")
    ahead: str | None = Field(
        default=None,
        description="Read the column this long after the row's time ('1h'), from the row of "
        "the same keys at that time: a label about the future of the row itself.",
    )
    over_next: str | None = Field(
        default=None,
        description="Aggregate the column over the rows after the row's time, up to this long "
        "after it ('1h'), among the rows sharing `group_by`'s values.",
    )
    agg: Literal["mean", "sum", "min", "max"] = Field(
        default="mean", description="The aggregate of `over_next`."
    )
    group_by: list[str] = Field(
        default_factory=list,
        description="Columns whose rows `over_next` aggregates together; the target's keys "
        "when empty.",
    )
    name: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        description="Name of a derived label; `column` otherwise.",
    )

    @property
    def derived(self) -> bool:
        return self.ahead is not None or self.over_next is not None or bool(self.comparisons())

    @property
    def output(self) -> str:
        return self.name or self.column

    @property
    def known_after(self) -> timedelta:
        """How long after the row's time its label is known."""
        return parse_duration(self.ahead or self.over_next or "0m")

    @model_validator(mode="after")
    def _named_when_derived(self) -> "LabelSpec":
        if self.ahead is not None and self.over_next is not None:
            raise ValueError("give one of 'ahead' and 'over_next', not both")
        if self.derived and self.name is None:
            raise ValueError(
                "a label derived with 'ahead', 'over_next' or a comparison needs a 'name'"
            )
        for field in ("ahead", "over_next"):
            if (span := getattr(self, field)) is not None:
                _positive_span(span, field)
        if self.over_next is None and (self.group_by or self.agg != "mean"):
            raise ValueError(
                "'agg' and 'group_by' aggregate over the next window: give 'over_next'"
            )
        return self


class TargetSpec(StrictModel):
    """What one prediction is about: a row of a warehouse model, and its label."""

    model: str = Field(description="dbt model asset key whose rows are predicted.")
    keys: list[str] = Field(min_length=1, description="Columns naming the row in requests.")
    time: str = Field(description="The row's time; the features are as of `lead` before it.")
    lead: str = Field(default="0m", description="How long before `time` the prediction is made.")
    label: LabelSpec
    subject: str = Field(description="What one row is, in plain words ('flight').")
    where: list[RowFilter] = Field(
        default_factory=list,
        description="Predict only the rows passing every filter (all rows when empty); the "
        "label is read before filtering, so `ahead` may read a row the filters drop.",
    )

    @property
    def lead_minutes(self) -> int:
        return int(parse_duration(self.lead).total_seconds() // 60)

    @model_validator(mode="after")
    def _consistent(self) -> "TargetSpec":
        _positive_span(self.lead, "lead", allow_zero=True)
        label = self.label.output
        if label in {*self.keys, self.time} | ANSWER_FIELDS:
            raise ValueError(f"label name '{label}' is taken by a key, the time or an answer field")
        return self


class CalendarSpec(StrictModel):
    """The days the batch and drift assets are partitioned by, in the target's local time."""

    start: date
    end: date
    time_zone: str = "UTC"

    @model_validator(mode="after")
    def _valid(self) -> "CalendarSpec":
        if self.start >= self.end:
            raise ValueError(f"start ({self.start}) must come before end ({self.end})")
        try:
            zoneinfo.ZoneInfo(self.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"'{self.time_zone}' is not a time zone name") from None
        return self


class SplitSpec(StrictModel):
    """Where the training set is cut in time: train, then validation, then holdout."""

    train_start: date
    validation_start: date
    holdout_start: date

    @model_validator(mode="after")
    def _in_order(self) -> "SplitSpec":
        if not self.train_start < self.validation_start < self.holdout_start:
            raise ValueError("train_start, validation_start and holdout_start must be in order")
        return self


class SampleDaysSpec(StrictModel):
    """Two days of the calendar the demo walks through: one the model trained on (scored in
    batch, its drift and quality judged) and one it never saw (its drift shown)."""

    seen: date
    unseen: date


class BaselineSpec(StrictModel):
    """The naive model a first candidate must beat: the label's mean per group in the train
    months (its rate, for a 0/1 label), shrunk where a group has few rows toward the coarser
    mean: the first column's group, or the overall mean when there is one column."""

    name: str
    description: str
    group_by: list[str] = Field(min_length=1, max_length=2)
    prior_rows: int = Field(default=50, ge=1, description="Rows the coarser rate weighs as.")


class DecisionSpec(StrictModel):
    """How a binary model's probability becomes a decision: a fixed threshold, or one
    picked on the validation months when the version is evaluated."""

    threshold: float | None = Field(
        default=None, gt=0, lt=1, description="Positive from this probability on."
    )
    rule: Literal["best_f1", "target_precision", "target_recall"] | None = Field(
        default=None,
        description="best_f1: the threshold of the highest F1 on the validation months; "
        "target_precision (target_recall): the one of the highest recall (precision) whose "
        "precision (recall) reaches `target` there.",
    )
    target: float | None = Field(default=None, gt=0, le=1)

    @model_validator(mode="after")
    def _one_way(self) -> "DecisionSpec":
        if (self.threshold is None) == (self.rule is None):
            raise ValueError("give one of 'threshold' and 'rule'")
        if (self.rule in {"target_precision", "target_recall"}) != (self.target is not None):
            raise ValueError("'target' goes with the rules target_precision and target_recall")
        return self


class GatesSpec(StrictModel):
    """What a candidate must clear on the holdout to be registered: the AUC and log-loss
    gates judge a binary model, the RMSE ones a regression."""

    min_auc: float = Field(default=0.70, ge=0, le=1, description="Lowest acceptable AUC.")
    min_auc_lift: float = Field(
        default=0.0, description="Lowest relative AUC gain over the baseline (0.02: 2% above it)."
    )
    max_log_loss: float = Field(default=0.6, gt=0, description="Highest acceptable log loss.")
    max_rmse: float | None = Field(
        default=None, gt=0, description="Highest acceptable RMSE (regression); none if unset."
    )
    min_rmse_lift: float = Field(
        default=0.0,
        description="Lowest relative RMSE reduction against the baseline (0.05: 5% lower).",
    )


class SlaSpec(StrictModel):
    """What the endpoint promises, per served version, as `serving_health` judges it."""

    p95_ms: float = Field(default=50.0, gt=0, description="p95 latency in the replica, in ms.")
    max_error_rate: float = Field(
        default=0.01, ge=0, le=1, description="Share of predictions that may fail (answer 500)."
    )
    min_rps: float | None = Field(
        default=None,
        gt=0,
        description="Throughput floor in requests per second over the window; none if unset.",
    )


class TrainingSpec(StrictModel):
    """The hyperparameter search: what varies, and its budget."""

    search_space: dict[str, SearchDimension] = Field(
        default_factory=lambda: {
            name: SearchDimension.model_validate(dimension)
            for name, dimension in DEFAULT_SEARCH_SPACE.items()
        },
        description="Hyperparameters to tune, each a distribution over a range.",
    )
    num_trials: int = Field(default=6, ge=1, description="Trials of the search.")
    max_rounds: int = Field(default=200, ge=1, description="Boosting rounds a trial may reach.")
    grace_rounds: int = Field(
        default=25, ge=1, description="Rounds before early stopping (ASHA) may stop a trial."
    )

    @model_validator(mode="after")
    def _valid(self) -> "TrainingSpec":
        check_search_space(self.search_space)
        check_budget(self.max_rounds, self.grace_rounds)
        return self


class EntitySpec(StrictModel):
    """What features are about; its join key is a text column (requests send text)."""

    name: str = Field(pattern=NAME_PATTERN)
    join_key: str
    description: str


class ViewSpec(StrictModel):
    """How a feature table is served by Feast."""

    entities: list[str] = Field(min_length=1)
    ttl: str = Field(description="How old a value may be and still be served; '0d': no limit.")
    join_keys: dict[str, str] = Field(
        default_factory=dict, description="Table column -> the entity's join key it fills."
    )


class OnDemandSpec(StrictModel):
    """Features computed from other views' values when they are read (ratios)."""

    name: str = Field(pattern=NAME_PATTERN)

    description: str
    sources: list[str] = Field(min_length=1)
    features: list[RatioFeature] = Field(min_length=1)


class ServiceSpec(StrictModel):
    name: str = Field(pattern=NAME_PATTERN)
    description: str


class FeastSpec(StrictModel):
    entities: list[EntitySpec] = Field(min_length=1)
    views: dict[str, ViewSpec]
    on_demand: list[OnDemandSpec] = Field(default_factory=list)
    service: ServiceSpec
    owner: str = ""


class UseCase(FeatureSpec):
    """A whole use case; see the module docstring and docs/use-cases.md."""

    description: str = Field(description="What the model predicts, in one sentence.")
    task: Literal["binary", "regression"] = Field(
        default="binary",
        description="binary: the probability of a 0/1 label; regression: the label's amount.",
    )
    target: TargetSpec
    score: str = Field(
        pattern=NAME_PATTERN,
        description="Column name of the prediction in batch scores: the probability (binary) "
        "or the predicted amount (regression).",
    )
    calendar: CalendarSpec
    splits: SplitSpec
    baseline: BaselineSpec
    feast: FeastSpec
    decision: DecisionSpec = Field(
        default_factory=lambda: DecisionSpec(threshold=0.5),
        description="How the probability becomes the endpoint's decision (binary only).",
    )
    gates: GatesSpec = Field(default_factory=GatesSpec)
    sla: SlaSpec = Field(default_factory=SlaSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    sample_days: SampleDaysSpec | None = Field(
        default=None,
        description="The demo's days; by default the middle of the train months and the "
        "calendar's first day (or the holdout's, when training starts on it).",
    )

    @property
    def demo_days(self) -> SampleDaysSpec:
        """The sample days the file gives, or the defaults."""
        if self.sample_days is not None:
            return self.sample_days
        splits = self.splits
        seen = splits.train_start + (splits.validation_start - splits.train_start) / 2
        before_training = self.calendar.start < splits.train_start
        return SampleDaysSpec(
            seen=seen, unseen=self.calendar.start if before_training else splits.holdout_start
        )

    def threshold_of(self, own: float | None, override: float | None = None) -> float | None:
        """Where a version's probability becomes a positive answer (None for a regression):
        the run's override, else the version's own, else (a version evaluated before
        versions carried one) the file's fixed threshold, else 0.5."""
        if self.task != "binary":
            return None
        return override or own or self.decision.threshold or 0.5

    @property
    def feature_service(self) -> str:
        return self.feast.service.name

    @property
    def label(self) -> str:
        return self.target.label.output

    @property
    def answer_field(self) -> str:
        """The endpoint's answer: the decision named after the label (binary), or
        `predicted_<label>` (regression)."""
        return self.label if self.task == "binary" else f"predicted_{self.label}"

    def served_features(self) -> set[str]:
        """Every feature of the feature service, by its full name `<view>__<feature>`."""
        names = {
            f"{t.name}{FEATURE_SEPARATOR}{c}"
            for t in self.tables
            for c in [*t.keep, *(f.name for f in t.features)]
        }
        return names | {
            f"{v.name}{FEATURE_SEPARATOR}{f.name}" for v in self.feast.on_demand for f in v.features
        }

    @model_validator(mode="after")
    def _consistent(self) -> "UseCase":
        _check_names(self)
        _check_views(self)
        _check_on_demand(self)
        if self.score in {*self.target.keys, self.target.time, self.label} | SCORED_COLUMNS:
            raise ValueError(
                f"field 'score': '{self.score}' is taken by a key, the time, the label or a "
                f"column of the batch scores ({', '.join(sorted(SCORED_COLUMNS))})"
            )
        if self.task == "regression" and (given := self.target.label.comparisons()):
            raise ValueError(
                f"target, label, field '{given[0]}': a regression predicts the amount itself; "
                "a comparison makes a 0/1 label, for task: binary"
            )
        if self.task == "regression" and "decision" in self.model_fields_set:
            raise ValueError(
                "field 'decision': a regression answers the amount itself, with no decision"
            )
        if self.answer_field in {*self.target.keys} | ANSWER_FIELDS:
            raise ValueError(
                f"the endpoint's answer field '{self.answer_field}' is taken by a key or "
                "another answer field"
            )
        calendar = self.calendar
        if not calendar.start <= self.splits.train_start < self.splits.holdout_start < calendar.end:
            raise ValueError(
                f"field 'splits': train_start to holdout_start must lie within the calendar, "
                f"{calendar.start} to {calendar.end}"
            )
        days = self.sample_days.model_dump() if self.sample_days else {}
        for name, day in days.items():
            if not calendar.start <= day < calendar.end:
                raise ValueError(
                    f"field 'sample_days.{name}': {day} lies outside the calendar, "
                    f"{calendar.start} to {calendar.end}"
                )
        for column in self.baseline.group_by:
            if column not in self.target.keys and column not in self.served_features():
                raise ValueError(
                    f"baseline, field 'group_by': '{column}' is neither a target key nor a "
                    "served feature (<view>__<feature>)"
                )
        return self


def _check_names(use_case: UseCase) -> None:
    """Entity names, and view names (feature and on-demand views share Feast's namespace),
    are each used once."""
    for kind, names in [
        ("entity", [e.name for e in use_case.feast.entities]),
        ("view", [*use_case.feast.views, *(v.name for v in use_case.feast.on_demand)]),
    ]:
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"feast: the {kind} name '{repeated[0]}' is used more than once")
    taken = sorted({t.name for t in use_case.tables} & FEAST_ASSETS)
    if taken:
        raise ValueError(
            f"tables: '{taken[0]}' names one of the use case's Feast assets "
            f"({', '.join(sorted(FEAST_ASSETS))}); name the table otherwise"
        )


def _check_views(use_case: UseCase) -> None:
    tables = {t.name: t for t in use_case.tables}
    entities = {e.name: e for e in use_case.feast.entities}
    missing = sorted(set(tables) - set(use_case.feast.views))
    if missing:
        raise ValueError(f"feast, views: table '{missing[0]}' has no view")
    for name, view in use_case.feast.views.items():
        where = f"feast, views, '{name}'"
        if name not in tables:
            raise ValueError(f"{where}: no table of that name")
        _positive_span(view.ttl, f"{where}, field 'ttl'", allow_zero=True)
        source = tables[name].source
        for column in view.join_keys:
            if column not in source.entity:
                raise ValueError(
                    f"{where}, field 'join_keys': '{column}' is not an entity column of table "
                    f"'{name}' (its entity columns: {', '.join(source.entity)})"
                )
        columns = {view.join_keys.get(c, c): c for c in source.entity}
        for entity in view.entities:
            if entity not in entities:
                raise ValueError(f"{where}, field 'entities': unknown entity '{entity}'")
            key = entities[entity].join_key
            if key not in columns:
                raise ValueError(
                    f"{where}: entity '{entity}' joins on '{key}', which the table's entity "
                    f"columns {sorted(columns)} do not provide (map one in 'join_keys')"
                )
            if source.columns[columns[key]] != "string":
                raise ValueError(
                    f"{where}: entity '{entity}' joins on '{columns[key]}', which is "
                    f"{source.columns[columns[key]]}; join keys are text, as requests send them"
                )
            if key not in use_case.target.keys:
                raise ValueError(
                    f"{where}: entity '{entity}' joins on '{key}', which is not among the "
                    f"target's keys {use_case.target.keys}"
                )


def _check_on_demand(use_case: UseCase) -> None:
    for view in use_case.feast.on_demand:
        where = f"feast, on_demand '{view.name}'"
        inputs: set[str] = set()
        for source in view.sources:
            if source not in use_case.feast.views:
                raise ValueError(f"{where}, field 'sources': unknown view '{source}'")
            table = use_case.table(source)
            inputs |= {*table.keep, *(f.name for f in table.features)}
        for feature in view.features:
            for field, column in feature.inputs().items():
                if column not in inputs:
                    raise ValueError(
                        f"{where}, feature '{feature.name}', field '{field}': no source view "
                        f"has the feature '{column}'"
                    )


def _positive_span(text: str, where: str, allow_zero: bool = False) -> timedelta:
    try:
        span = parse_duration(text)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if span < timedelta(0) or (span == timedelta(0) and not allow_zero):
        raise ValueError(f"{where}: must be positive, got '{text}'")
    return span


def use_case_path(name: str) -> Path:
    return USE_CASES_DIR / f"{name}.yaml"


def load_use_case(path: Path) -> UseCase:
    """Read and check a use-case file; every error names the file and where in it."""
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in USE_CASES_DIR.glob("*.yaml")))
        raise UseCaseError(f"no use case file {path}; the use cases here are: {known}")
    use_case = load_spec_file(path, UseCase)
    if use_case.use_case != path.stem:
        raise UseCaseError(
            f"{path}: names the use case '{use_case.use_case}'; a file is named after its "
            f"use case ({use_case.use_case}.yaml)"
        )
    return use_case


def load_use_cases(names: list[str]) -> tuple[list[UseCase], dict[str, str]]:
    """The named use cases that load, and for each that does not, what is wrong with it: one
    broken file must not take the others down."""
    loaded, broken = [], {}
    for name in names:
        try:
            loaded.append(load_use_case(use_case_path(name)))
        except ValueError as error:  # FeatureSpecError and UseCaseError are ValueErrors
            broken[name] = str(error)
    return loaded, broken
