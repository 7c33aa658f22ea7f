"""Feature tables computed on a Ray cluster, one entity partition per task.

Every window and lag of a table looks at rows of one entity (or of one group of an
aggregate's `group_by`), so a table is split by the columns all of them group by and each
part runs through the same polars engine; the parts, put together in the engine's order,
are the table it computes in one process.
"""

from dataclasses import dataclass

import polars as pl

from facilflow_assets.feature_spec import AggregateFeature, FeatureTableSpec
from facilflow_assets.features.engine import compute_features
from facilflow_assets.features.entity_partitions import partition_count, run_on_cluster, split
from resources import RayResource


@dataclass(frozen=True)
class ClusterTable:
    frame: pl.DataFrame
    partitioned_by: list[str]  # empty: the table could not be split, and ran in one process
    partitions: int
    nodes: int


def compute_on_cluster(
    spec: FeatureTableSpec, source: pl.DataFrame, ray_cluster: RayResource
) -> ClusterTable:
    """`compute_features(spec, source)`, split by entity over the cluster's CPUs (more
    partitions than CPUs for a large source)."""
    columns = partition_columns(spec, source)
    if not columns or source.is_empty():
        return ClusterTable(compute_features(spec, source.lazy()), [], 1, 0)
    with ray_cluster.session() as resources:
        groups = source.select(pl.struct(columns).n_unique()).item()
        count = min(partition_count(resources, source.height), groups)
        parts = [part for part in split(source, columns, count) if not part.is_empty()]
        frames, nodes = run_on_cluster(compute_features, [(spec, part) for part in parts])
    order = [*spec.source.entity, spec.timestamp_column]
    return ClusterTable(pl.concat(frames).sort(order), columns, len(parts), nodes)


def partition_columns(spec: FeatureTableSpec, source: pl.DataFrame) -> list[str]:
    """Columns whose rows with equal values must be computed together; empty when no split
    keeps every window whole (an aggregate over the whole table, say).

    These are the columns every grouping shares: the entity's, and each aggregate's own
    `group_by`. When the aggregates share columns the entity lacks (departures per origin
    airport, in a table per route), the split is by those, provided the data puts each
    entity in one group of them.
    """
    entity = spec.source.entity
    others = [
        feature.group_by
        for feature in spec.features
        if isinstance(feature, AggregateFeature)
        and feature.group_by is not None
        and set(feature.group_by) != set(entity)
    ]
    shared_with_entity = [c for c in entity if all(c in grouping for grouping in others)]
    if shared_with_entity or not others:
        return shared_with_entity
    shared = [c for c in others[0] if all(c in g for g in others) and c in source.columns]
    if shared and _each_entity_in_one_group(source, entity, shared):
        return shared
    return []


def _each_entity_in_one_group(source: pl.DataFrame, entity: list[str], group: list[str]) -> bool:
    groups_per_entity = source.group_by(entity).agg(pl.struct(group).n_unique().alias("groups"))
    return bool(groups_per_entity["groups"].max() == 1)
