"""Versions of a use case's feature service.

A model reads the features of the service it was trained on. When the use case's features
change, its service gets a new version (`flight_delay_v1` -> `flight_delay_v2`) and the old
versions stay in the Feast registry, still computed and served, while a registered model
version that is not archived reads them. Each service records its definition (tables,
entities, views) in its tags, so the feature tables can keep computing what a kept version
needs after the file no longer declares it.
"""

import hashlib
import json
import re
from dataclasses import dataclass

from pydantic import ValidationError

from facilflow_assets.feature_spec import FeatureTableSpec, StrictModel
from facilflow_assets.use_case import EntitySpec, OnDemandSpec, UseCase, ViewSpec

# The Feast feature service a model was trained on, on its run and its registered versions.
FEATURE_SERVICE_TAG = "facilflow.feature_service"
VERSION_TAG = "facilflow/service_version"
FINGERPRINT_TAG = "facilflow/fingerprint"
DEFINITION_TAG = "facilflow/definition"
# The highest version number the project ever gave, on each service: numbers never repeat.
ISSUED_TAG = "facilflow/issued_versions"
_VERSION_SUFFIX = re.compile(r"^(?P<base>.+)_v(?P<number>\d+)$")
# Fields that document a definition without changing the values it computes.
_NOT_COMPUTED = {"description", "expect"}


class FeatureVersionError(ValueError):
    """The use case's features cannot change this way while a kept service version needs
    the old ones; the message names the table, the feature and the version."""


class FeatureDefinition(StrictModel):
    """What a service's features are computed from."""

    entities: list[EntitySpec]
    tables: list[FeatureTableSpec]
    views: dict[str, ViewSpec]
    on_demand: list[OnDemandSpec] = []

    @classmethod
    def of(cls, use_case: UseCase) -> "FeatureDefinition":
        return cls(
            entities=use_case.feast.entities,
            tables=use_case.tables,
            views=use_case.feast.views,
            on_demand=use_case.feast.on_demand,
        )

    def fingerprint(self) -> str:
        """Equal for definitions computing the same values, whatever their descriptions."""
        computed = json.dumps(_computed(self), sort_keys=True)
        return hashlib.sha256(computed.encode()).hexdigest()[:16]

    def table(self, name: str) -> FeatureTableSpec:
        return next(t for t in self.tables if t.name == name)

    def served(self) -> dict[str, list[str]]:
        """Each feature view and on-demand view -> the feature names the service reads."""
        served = {t.name: [*t.keep, *(f.name for f in t.features)] for t in self.tables}
        return served | {v.name: [f.name for f in v.features] for v in self.on_demand}


@dataclass(frozen=True)
class ServiceVersion:
    name: str
    number: int
    definition: FeatureDefinition

    @property
    def fingerprint(self) -> str:
        return self.definition.fingerprint()

    def tags(self) -> dict[str, str]:
        return {
            VERSION_TAG: str(self.number),
            FINGERPRINT_TAG: self.fingerprint,
            DEFINITION_TAG: self.definition.model_dump_json(),
        }

    @staticmethod
    def issued_by(service) -> int:
        """The highest version number given when `service` was applied (0: unrecorded)."""
        return int(service.tags.get(ISSUED_TAG, service.tags.get(VERSION_TAG, 0)))

    @classmethod
    def from_service(cls, service) -> "ServiceVersion | None":
        """The version a Feast feature service records, or None for one without a record."""
        tags = service.tags
        if VERSION_TAG not in tags or DEFINITION_TAG not in tags:
            return None
        try:
            definition = FeatureDefinition.model_validate_json(tags[DEFINITION_TAG])
        except ValidationError as error:
            raise FeatureVersionError(
                f"feature service '{service.name}': its recorded definition no longer loads: "
                f"{error}"
            ) from None
        return cls(service.name, int(tags[VERSION_TAG]), definition)


def version_name(declared: str, number: int) -> str:
    """The name of version `number` of the service declared as `declared`: the declared
    name for its first version, `<base>_v<number>` after (`flight_delay_v1` is version 1
    of base `flight_delay`; `rain` is version 1 of base `rain`)."""
    base, first = _base_and_first(declared)
    return declared if number == first else f"{base}_v{number}"


def _base_and_first(declared: str) -> tuple[str, int]:
    match = _VERSION_SUFFIX.match(declared)
    return (match["base"], int(match["number"])) if match else (declared, 1)


@dataclass(frozen=True)
class ServiceLineup:
    """The services a use case's Feast project holds: the current version, built from the
    file, the older ones kept for models that read them, and the union of their features
    that the feature tables compute and the views serve."""

    current: ServiceVersion
    kept: tuple[ServiceVersion, ...]
    merged: FeatureDefinition
    issued: int  # the highest version number given so far

    @property
    def versions(self) -> list[ServiceVersion]:
        return [self.current, *self.kept]

    @classmethod
    def of(
        cls, current: ServiceVersion, kept: tuple[ServiceVersion, ...], issued: int = 0
    ) -> "ServiceLineup":
        return cls(current, kept, merge(current.definition, kept), max(issued, current.number))

    def tags(self, version: ServiceVersion) -> dict[str, str]:
        return version.tags() | {ISSUED_TAG: str(self.issued)}

    def to_json(self) -> str:
        versions = [[v.name, v.number, v.definition.model_dump(mode="json")] for v in self.versions]
        return json.dumps({"issued": self.issued, "versions": versions})

    @classmethod
    def from_json(cls, text: str) -> "ServiceLineup":
        document = json.loads(text)
        current, *kept = [
            ServiceVersion(name, number, FeatureDefinition.model_validate(definition))
            for name, number, definition in document["versions"]
        ]
        return cls.of(current, tuple(kept), document["issued"])

    @classmethod
    def plan(
        cls,
        use_case: UseCase,
        recorded: list[ServiceVersion],
        in_use: set[str],
        issued: int = 0,
    ) -> "ServiceLineup":
        """The lineup once the file's features are applied to a registry holding
        `recorded` (having given numbers up to `issued`): the current version is the
        recorded one with the same fingerprint, or the next number. Older versions stay
        while a model version in `in_use` reads them."""
        definition = FeatureDefinition.of(use_case)
        fingerprint = definition.fingerprint()
        issued = max([issued, *(v.number for v in recorded)])
        same = [v for v in recorded if v.fingerprint == fingerprint]
        if same:
            number = same[0].number
        else:
            number = max(issued, _base_and_first(use_case.feature_service)[1] - 1) + 1
        current = ServiceVersion(version_name(use_case.feature_service, number), number, definition)
        kept = tuple(
            v
            for v in sorted(recorded, key=lambda v: v.number)
            if v.number != number and v.name in in_use
        )
        return cls.of(current, kept, issued)


def merge(current: FeatureDefinition, kept: tuple[ServiceVersion, ...]) -> FeatureDefinition:
    """The current definition, with what the kept versions read and it no longer declares:
    their retired features, tables' source columns, views and entities. A name the current
    definition gives another meaning, or a table it drops, while a kept version reads it
    is refused."""
    tables = {t.name: t for t in current.tables}
    views, entities = dict(current.views), {e.name: e for e in current.entities}
    on_demand = {v.name: v for v in current.on_demand}
    for version in kept:
        old = version.definition
        for entity in old.entities:
            _same_or_new(entities, entity.name, entity, version, "entity", ("join_key",))
        for name, view in old.views.items():
            _same_or_new(
                views, name, view, version, f"view '{name}'", ("entities", "ttl", "join_keys")
            )
        for table in old.tables:
            if table.name not in tables:
                # No asset would compute it any more: the kept version would read a table
                # frozen at its last file.
                raise FeatureVersionError(
                    f"table '{table.name}' is gone from the file, but feature service "
                    f"{version.name} still reads it for a registered model version that is "
                    f"not archived; keep the table until the versions trained on "
                    f"{version.name} are archived"
                )
            tables[table.name] = _merged_table(tables[table.name], table, version)
        for view in old.on_demand:
            on_demand[view.name] = _merged_on_demand(on_demand.get(view.name), view, version)
    return FeatureDefinition(
        entities=list(entities.values()),
        tables=list(tables.values()),
        views=views,
        on_demand=list(on_demand.values()),
    )


def _conflict(version: ServiceVersion, where: str, field: str) -> FeatureVersionError:
    return FeatureVersionError(
        f"{where}: '{field}' changed, but feature service {version.name} still reads it "
        f"for a registered model version that is not archived; give the changed one a new "
        f"name, or archive the versions trained on {version.name}"
    )


def _same_or_new(known: dict, name: str, old, version: ServiceVersion, where: str, fields):
    if name not in known:
        known[name] = old
        return
    for field in fields:
        if getattr(known[name], field) != getattr(old, field):
            raise _conflict(version, where, field)


def table_with_kept(table: FeatureTableSpec, kept: tuple[ServiceVersion, ...]) -> FeatureTableSpec:
    """`table`, also computing what the kept versions read of it."""
    for version in kept:
        for old in version.definition.tables:
            if old.name == table.name:
                table = _merged_table(table, old, version)
    return table


def _merged_table(
    table: FeatureTableSpec, old: FeatureTableSpec, version: ServiceVersion
) -> FeatureTableSpec:
    where = f"table '{old.name}'"
    for field in ("model", "entity", "timestamp", "static_as_of"):
        if getattr(table.source, field) != getattr(old.source, field):
            raise _conflict(version, where, f"source.{field}")
    columns = dict(table.source.columns)
    for column, kind in old.source.columns.items():
        if columns.setdefault(column, kind) != kind:
            raise _conflict(version, where, f"source.columns.{column}")
    features = {f.name: f for f in table.features}
    for feature in old.features:
        if feature.name in table.keep:
            raise _conflict(version, f"{where}, feature '{feature.name}'", "keep")
        known = features.setdefault(feature.name, feature)
        if _computed(known) != _computed(feature):
            raise _conflict(version, f"{where}, feature '{feature.name}'", "definition")
    keep = [*table.keep, *(c for c in old.keep if c not in table.keep)]
    clash = sorted(set(keep) & set(features))
    if clash:
        raise _conflict(version, f"{where}, feature '{clash[0]}'", "keep")
    expect = table.expect.model_copy(
        update={
            "max_null_share": old.expect.max_null_share | table.expect.max_null_share,
            "ranges": old.expect.ranges | table.expect.ranges,
        }
    )
    return FeatureTableSpec(
        name=table.name,
        description=table.description,
        source=table.source.model_copy(update={"columns": columns}),
        keep=keep,
        features=list(features.values()),
        expect=expect,
    )


def _merged_on_demand(
    view: OnDemandSpec | None, old: OnDemandSpec, version: ServiceVersion
) -> OnDemandSpec:
    if view is None:
        return old
    where = f"on-demand view '{old.name}'"
    if set(view.sources) != set(old.sources):
        raise _conflict(version, where, "sources")
    features = {f.name: f for f in view.features}
    for feature in old.features:
        if _computed(features.setdefault(feature.name, feature)) != _computed(feature):
            raise _conflict(version, f"{where}, feature '{feature.name}'", "definition")
    return view.model_copy(update={"features": list(features.values())})


def _computed(model: StrictModel) -> dict[str, object]:
    dumped: dict[str, object] = model.model_dump(mode="json")
    return {k: _without(v, _NOT_COMPUTED) for k, v in dumped.items() if k not in _NOT_COMPUTED}


def _without(value: object, keys: set[str]) -> object:
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_without(v, keys) for v in value]
    return value
