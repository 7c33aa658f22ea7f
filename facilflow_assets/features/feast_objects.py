"""The Feast objects of a use case, built from its file: entities, one file source and one
feature view per feature table, the on-demand views and the feature service, with every
version of the service its Feast project keeps (see `service_versions`).

Each file source reads the parquet file its feature table asset writes in the use case's
`features_dir`.
"""

from pathlib import Path
from types import FunctionType
from typing import cast

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.feature_view import DUMMY_ENTITY
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_contents import RepoContents
from feast.types import Float64, String

from facilflow_assets.feature_spec import parse_duration
from facilflow_assets.features.feast_schema import feature_fields
from facilflow_assets.features.service_versions import FeatureDefinition, ServiceLineup
from facilflow_assets.use_case import OnDemandSpec, UseCase

RATIO_FUNCTION = "ratios"


def repo_contents(
    use_case: UseCase, features_dir: Path, lineup: ServiceLineup | None = None
) -> RepoContents:
    """The use case's objects as `feast apply` parses them from a repository."""
    objects = feast_objects(use_case, features_dir, lineup)
    return RepoContents(
        projects=[],
        data_sources=[o for o in objects if isinstance(o, FileSource)],
        feature_views=[o for o in objects if isinstance(o, FeatureView)],
        on_demand_feature_views=[o for o in objects if isinstance(o, OnDemandFeatureView)],
        stream_feature_views=[],
        label_views=[],
        entities=[*(o for o in objects if isinstance(o, Entity)), DUMMY_ENTITY],
        feature_services=[o for o in objects if isinstance(o, FeatureService)],
        permissions=[],
    )


def feast_objects(
    use_case: UseCase, features_dir: Path, lineup: ServiceLineup | None = None
) -> list:
    """Every Feast object of the use case, in the order `feast apply` would create them:
    those of `lineup` (by default, the file's service alone, as its first version)."""
    lineup = lineup or ServiceLineup.plan(use_case, recorded=[], in_use=set())
    definition = lineup.merged
    tags = {"use_case": use_case.use_case}
    owner = use_case.feast.owner
    entities = {
        e.name: Entity(
            name=e.name,
            join_keys=[e.join_key],
            value_type=ValueType.STRING,
            description=e.description,
            tags=tags,
        )
        for e in definition.entities
    }
    views = {
        t.name: _feature_view(definition, t.name, entities, tags, owner, features_dir)
        for t in definition.tables
    }
    on_demand = {v.name: _on_demand_view(v, views, tags, owner) for v in definition.on_demand}
    readable = views | on_demand
    services = [
        FeatureService(
            name=version.name,
            features=[
                _projection(readable[view], names)
                for view, names in version.definition.served().items()
            ],
            description=use_case.feast.service.description
            if version is lineup.current
            else f"Version {version.number} of the features, kept for the models trained on it.",
            tags=tags | lineup.tags(version),
            owner=owner,
        )
        for version in lineup.versions
    ]
    return [
        *entities.values(),
        *(v.batch_source for v in views.values()),
        *views.values(),
        *on_demand.values(),
        *services,
    ]


def _feature_view(
    definition: FeatureDefinition,
    name: str,
    entities: dict[str, Entity],
    tags: dict[str, str],
    owner: str,
    features_dir: Path,
) -> FeatureView:
    table = definition.table(name)
    view = definition.views[name]
    source = FileSource(
        name=f"{name}_source",
        path=str(features_dir / f"{name}.parquet"),
        timestamp_field=table.timestamp_column,
        field_mapping=view.join_keys,
        description=table.description,
        tags=tags | {"feature_table": name},
    )
    members = [entities[e] for e in view.entities]
    return FeatureView(
        name=name,
        entities=members,
        ttl=parse_duration(view.ttl),
        # Join keys are declared, not left to inference, which can miss a mapped key.
        schema=[
            *(Field(name=e.join_key, dtype=String) for e in members),
            *feature_fields(table),
        ],
        source=source,
        online=True,
        description=table.description,
        tags=tags | {"source_model": table.source.model},
        owner=owner,
    )


def _projection(
    view: FeatureView | OnDemandFeatureView, names: list[str]
) -> FeatureView | OnDemandFeatureView:
    """A copy of `view` that serves only the features `names`."""
    return cast(FeatureView | OnDemandFeatureView, view[names])  # Feast's: inferred as None


def _on_demand_view(
    spec: OnDemandSpec, views: dict[str, FeatureView], tags: dict[str, str], owner: str
) -> OnDemandFeatureView:
    source = ratio_udf_source(
        [(f.name, f.numerator, f.denominator, f.on_zero) for f in spec.features]
    )
    namespace: dict[str, object] = {"pd": pd}
    exec(source, namespace)  # noqa: S102 - generated above from checked names and numbers
    udf = namespace[RATIO_FUNCTION]
    if not isinstance(udf, FunctionType):
        raise TypeError(f"the generated {RATIO_FUNCTION} is a {type(udf).__name__}")
    return OnDemandFeatureView(
        name=spec.name,
        sources=[views[s] for s in spec.sources],
        schema=[
            Field(name=f.name, dtype=Float64, description=f.description) for f in spec.features
        ],
        udf=udf,
        udf_string=source,
        mode="pandas",
        description=spec.description,
        tags=tags,
        owner=owner,
    )


def ratio_udf_source(ratios: list[tuple[str, str, str, float | None]]) -> str:
    """The source of a pandas function computing `ratios` (name, numerator, denominator,
    value where the denominator is 0; names are checked identifiers, values finite). Feast
    stores the source in its registry and rebuilds the function from it wherever features
    are read, so it must stand on its own."""
    return f"""def {RATIO_FUNCTION}(inputs):
    columns = {{}}
    for name, numerator, denominator, on_zero in {ratios!r}:
        below = inputs[denominator].astype("float64")
        ratio = inputs[numerator].astype("float64") / below
        columns[name] = ratio.where(below != 0, on_zero)
    return pd.DataFrame(columns)
"""
