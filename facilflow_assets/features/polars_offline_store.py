"""A Feast offline store on polars: point-in-time joins as sorted as-of joins.

Semantics follow Feast's DuckDB store. For each entity row and feature view, take the
feature row with the same join keys whose event time is at or before the entity time and
no more than the view's TTL before it; among rows with the same event time, the latest
created time wins. Field mappings, projections (aliases, join key maps) and full feature
names behave the same way. Use it with `offline_store: type: <this module>.PolarsOfflineStore`.

With `ray_address` in that setting, the training-set joins and the online store's loads
(the latest row per entity) run on that Ray cluster, split by entity: each task reads and
filters the view's rows itself, so no process holds a whole feature table.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pandas as pd
import polars as pl
import pyarrow
from feast.data_source import DataSource
from feast.errors import SavedDatasetLocationAlreadyExists
from feast.feature_view import FeatureView
from feast.infra.offline_stores.file_source import FileSource, SavedDatasetFileStorage
from feast.infra.offline_stores.offline_store import (
    OfflineStore,
    RetrievalJob,
    RetrievalMetadata,
)
from feast.infra.offline_stores.offline_utils import infer_event_timestamp_from_entity_df
from feast.infra.registry.base_registry import BaseRegistry
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from feast.saved_dataset import SavedDatasetStorage
from polars._typing import TimeUnit
from pydantic import StrictStr

from facilflow_assets.atomic_files import write_parquet_atomic
from facilflow_assets.features.engine import last_per_group
from facilflow_assets.features.entity_partitions import (
    collect_by_partition,
    partition_count,
    partition_of,
    run_on_cluster,
    split,
)
from resources.ray_cluster import ray_session

_JOIN_TIME = pl.Datetime("ns", "UTC")
_ROW = "__entity_row"
_AS_OF = "__as_of"
_EVENT_TIME = "__feature_event_time"


class PolarsOfflineStoreConfig(FeastConfigBaseModel):
    type: StrictStr = "facilflow_assets.features.polars_offline_store.PolarsOfflineStore"
    ray_address: StrictStr | None = None
    """A Ray cluster to join on, split by entity; in this process when unset."""


class PolarsRetrievalJob(RetrievalJob):
    """A deferred polars query; nothing is read until the result is asked for."""

    def __init__(
        self,
        query: Callable[[], pl.DataFrame],
        full_feature_names: bool = False,
        on_demand_feature_views: list[OnDemandFeatureView] | None = None,
        metadata: RetrievalMetadata | None = None,
    ):
        self._query = query
        self._full_feature_names = full_feature_names
        self._on_demand_feature_views = on_demand_feature_views or []
        self._metadata = metadata

    @property
    def ray_nodes(self) -> int:
        """How many Ray nodes the query ran on, once it ran (0: in this process)."""
        return getattr(self._query, "ray_nodes", 0)

    def to_polars(self) -> pl.DataFrame:
        """The result as a polars frame (on-demand views are not applied here)."""
        return self._query()

    def _to_df_internal(self, timeout: int | None = None) -> pd.DataFrame:
        return self.to_polars().to_pandas()

    def _to_arrow_internal(self, timeout: int | None = None) -> pyarrow.Table:
        return self.to_polars().to_arrow()

    @property
    def full_feature_names(self) -> bool:
        return self._full_feature_names

    @property
    def on_demand_feature_views(self) -> list[OnDemandFeatureView]:
        views = self._on_demand_feature_views
        return [cast(OnDemandFeatureView, _ReadingItsInputs(view)) for view in views]

    @property
    def metadata(self) -> RetrievalMetadata | None:
        return self._metadata

    def persist(
        self,
        storage: SavedDatasetStorage,
        allow_overwrite: bool = False,
        timeout: int | None = None,
    ) -> None:
        if not isinstance(storage, SavedDatasetFileStorage):
            raise ValueError("the polars offline store saves datasets to files only")
        path = Path(storage.file_options.uri)
        if path.exists() and not allow_overwrite:
            raise SavedDatasetLocationAlreadyExists(location=str(path))
        write_parquet_atomic(self.to_polars(), path)


class _ReadingItsInputs:
    """An on-demand view that Feast's `to_arrow` hands only the columns it reads: Feast
    hands it the whole training set, which a pandas view then copies whole."""

    def __init__(self, view: OnDemandFeatureView):
        self._view = view
        self._inputs = set()
        for projection in view.source_feature_view_projections.values():
            for feature in projection.features:
                for view_name in (projection.name, projection.name_to_use()):
                    self._inputs |= {f"{view_name}__{feature.name}", feature.name}
        for request in view.source_request_sources.values():
            self._inputs |= {field.name for field in request.schema}

    def __getattr__(self, name: str):
        return getattr(self._view, name)

    def transform_arrow(self, table: pyarrow.Table, full_feature_names: bool) -> pyarrow.Table:
        read = [column for column in table.column_names if column in self._inputs]
        return self._view.transform_arrow(table.select(read), full_feature_names)


class PolarsOfflineStore(OfflineStore):
    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str | None,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
    ) -> RetrievalJob:
        entities, timestamp_column = _entity_frame(entity_df)
        views = [
            (view, *_view_features(config, view, feature_refs, full_feature_names))
            for view in feature_views
        ]
        views = [(view, table, columns) for view, table, columns in views if columns]

        view_rows = [_view_rows(entities, table, columns, view) for view, table, columns in views]
        query = _Joins(entities, timestamp_column, view_rows, _ray_address(config))

        times = entities[timestamp_column]
        earliest, latest = times.min(), times.max()
        return PolarsRetrievalJob(
            query,
            full_feature_names=full_feature_names,
            on_demand_feature_views=OnDemandFeatureView.get_requested_odfvs(
                feature_refs, project, registry
            ),
            metadata=RetrievalMetadata(
                features=feature_refs,
                keys=[c for c in entities.columns if c != timestamp_column],
                min_event_timestamp=earliest if isinstance(earliest, datetime) else None,
                max_event_timestamp=latest if isinstance(latest, datetime) else None,
            ),
        )

    @staticmethod
    def pull_latest_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None,
        start_date: datetime,
        end_date: datetime,
    ) -> RetrievalJob:
        times = [timestamp_field, *([created_timestamp_column] if created_timestamp_column else [])]
        rows = _in_range(
            _scan(config, data_source).select([*join_key_columns, *feature_name_columns, *times]),
            timestamp_field,
            start_date,
            end_date,
        )
        latest = last_per_group(rows.sort([*join_key_columns, *times]), join_key_columns)
        address = _ray_address(config)
        if not address:
            return PolarsRetrievalJob(latest.collect)

        def on_cluster() -> pl.DataFrame:
            with ray_session(address) as resources:
                count = max(1, int(resources.get("CPU", 1)))  # one row per entity comes back
                return collect_by_partition(latest, join_key_columns, count)

        return PolarsRetrievalJob(on_cluster)

    @staticmethod
    def pull_all_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> RetrievalJob:
        times = [timestamp_field, *([created_timestamp_column] if created_timestamp_column else [])]
        rows = _scan(config, data_source).select([*join_key_columns, *feature_name_columns, *times])
        return PolarsRetrievalJob(_in_range(rows, timestamp_field, start_date, end_date).collect)


def _ray_address(config: RepoConfig) -> str | None:
    return getattr(config.offline_store, "ray_address", None)


def _scan(config: RepoConfig, data_source: DataSource) -> pl.LazyFrame:
    if not isinstance(data_source, FileSource):
        raise TypeError(
            f"the polars offline store reads FileSource parquet; '{data_source.name}' is a "
            f"{type(data_source).__name__}"
        )
    path = FileSource.get_uri_for_file_path(config.repo_path, data_source.path)
    return pl.scan_parquet(path)


def _utc(frame: pl.LazyFrame, columns: list[str], unit: TimeUnit = "us") -> pl.LazyFrame:
    """Make timestamp columns UTC in `unit`; naive ones are taken to be UTC already."""
    schema = frame.collect_schema()
    fixed = []
    for column in columns:
        dtype = schema[column]
        expr = pl.col(column)
        if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
            expr = expr.dt.replace_time_zone("UTC")
        elif not isinstance(dtype, pl.Datetime):
            expr = expr.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        fixed.append(expr.cast(pl.Datetime(unit, "UTC")))
    return frame.with_columns(fixed)


def _in_range(
    rows: pl.LazyFrame, column: str, start: datetime | None, end: datetime | None
) -> pl.LazyFrame:
    rows = _utc(rows, [column])
    if start is not None:
        rows = rows.filter(pl.col(column) >= start.astimezone(UTC))
    if end is not None:
        rows = rows.filter(pl.col(column) <= end.astimezone(UTC))
    return rows


def _entity_frame(entity_df: pd.DataFrame | str | None) -> tuple[pl.DataFrame, str]:
    """The entity rows with their event times in UTC, at the precision they were given in.

    Times given as text (ISO 8601) are parsed as Feast's own stores parse them.
    """
    if isinstance(entity_df, str):
        raise TypeError("the polars offline store takes an entity DataFrame, not a SQL query")
    if entity_df is None:
        raise TypeError("the polars offline store takes an entity DataFrame; it was given none")
    timestamp_column = infer_event_timestamp_from_entity_df(dict(entity_df.dtypes))
    if not pd.api.types.is_datetime64_any_dtype(entity_df.dtypes[timestamp_column]):
        times = _parsed_times(entity_df[timestamp_column], timestamp_column)
        entity_df = entity_df.assign(**{timestamp_column: times})
    entities = pl.from_pandas(entity_df)
    dtype = entities.schema[timestamp_column]
    unit = dtype.time_unit if isinstance(dtype, pl.Datetime) else "us"
    entities = _utc(entities.lazy(), [timestamp_column], unit).collect()
    return entities, timestamp_column


def _parsed_times(times, column: str) -> pd.Series:
    try:
        return pd.to_datetime(times, utc=True, format="ISO8601")
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"entity column '{column}' must hold times (datetimes or ISO 8601 text): {error}"
        ) from error


def _view_features(
    config: RepoConfig, view: FeatureView, feature_refs: list[str], full_feature_names: bool
) -> tuple[pl.LazyFrame, list[str]]:
    """The view's rows, one per join key and event time, with features under output names."""
    prefix = view.projection.name_to_use()
    features = [ref.split(":", 1)[1] for ref in feature_refs if ref.startswith(f"{prefix}:")]
    base_name = view.projection.name_alias or view.name
    output = {f: f"{base_name}__{f}" if full_feature_names else f for f in features}
    if not features:
        return pl.LazyFrame(), []
    source = _batch_source(view)
    table = _scan(config, source)
    names = table.collect_schema().names()
    table = table.rename({old: new for old, new in source.field_mapping.items() if old in names})
    keys = list(_join_key_map(view))
    times = [source.timestamp_field]
    if source.created_timestamp_column:
        times.append(source.created_timestamp_column)
    table = _utc(table.select([*keys, *times, *features]), times)
    # Among rows with the same keys and event time, the latest created one wins. The
    # result stays sorted by keys and event time, as the as-of join needs it.
    table = last_per_group(table.sort([*keys, *times]), [*keys, source.timestamp_field])
    return table.rename(output), list(output.values())


def _batch_source(view: FeatureView) -> DataSource:
    if view.batch_source is None:
        raise ValueError(f"feature view '{view.name}' has no batch source to read")
    return view.batch_source


def _join_key_map(view: FeatureView) -> dict[str, str]:
    """Feature table join key to entity DataFrame column."""
    key_map = view.projection.join_key_map or {c.name: c.name for c in view.entity_columns}
    if not key_map:
        raise ValueError(
            f"feature view '{view.name}' has no join key columns; list its entities' join "
            "keys in the view's schema so a point-in-time join cannot match across entities"
        )
    return key_map


@dataclass(frozen=True)
class _ViewRows:
    """How to read a view's rows under the entity DataFrame's key names, and join them."""

    table: pl.LazyFrame  # join keys, event time, features; read when a join runs
    entity_keys: list[str]
    tolerance: timedelta | None
    features: list[str]

    def join(self, keys: pl.DataFrame, table: pl.DataFrame) -> pl.DataFrame:
        """The features of `keys` (row number and feature columns, in no set order)."""
        joined = keys.sort([*self.entity_keys, _AS_OF]).join_asof(
            table,
            left_on=_AS_OF,
            right_on=_EVENT_TIME,
            by=self.entity_keys,
            strategy="backward",
            tolerance=self.tolerance,
            check_sortedness=False,
        )
        return joined.select(_ROW, *self.features)

    def join_partition(self, keys: pl.DataFrame, index: int, count: int) -> pl.DataFrame:
        """`join` of entity partition `index` of `count`: the view's rows are read and
        filtered to the partition where this runs."""
        in_partition = partition_of(self.entity_keys, count) == index
        return self.join(keys, self.table.filter(in_partition).collect())


def _view_rows(
    entities: pl.DataFrame, table: pl.LazyFrame, features: list[str], view: FeatureView
) -> _ViewRows:
    key_map = _join_key_map(view)
    missing = [column for column in key_map.values() if column not in entities.columns]
    if missing:
        raise ValueError(
            f"feature view '{view.name}' joins on {missing}, which the entity DataFrame lacks"
        )
    entity_keys = list(key_map.values())
    # Both sides in nanoseconds: an entity time given to the nanosecond is not rounded into
    # a TTL it is past.
    table = (
        table.rename({_batch_source(view).timestamp_field: _EVENT_TIME, **key_map})
        .select(*entity_keys, _EVENT_TIME, *features)
        .with_columns(
            *[pl.col(c).cast(entities.schema[c]) for c in entity_keys],
            pl.col(_EVENT_TIME).cast(_JOIN_TIME),
        )
    )
    ttl = view.ttl if view.ttl and view.ttl.total_seconds() > 0 else None
    return _ViewRows(table, entity_keys, ttl, features)


class _Joins:
    """The point-in-time joins of one retrieval, in this process or, given a Ray cluster's
    address, one task per view and entity partition spread over the cluster. One view's
    entity keys are held at a time."""

    def __init__(
        self,
        entities: pl.DataFrame,
        timestamp_column: str,
        views: list[_ViewRows],
        ray_address: str | None,
    ):
        self.entities, self.timestamp_column = entities, timestamp_column
        self.views, self.ray_address = views, ray_address
        self.ray_nodes = 0

    def __call__(self) -> pl.DataFrame:
        if self.ray_address:
            features = self._on_cluster(self.ray_address)
        else:
            features = [rows.join(self._keys(rows), rows.table.collect()) for rows in self.views]
        in_row_order = [frame.sort(_ROW).drop(_ROW) for frame in features]
        return pl.concat([self.entities, *in_row_order], how="horizontal")

    def _keys(self, rows: _ViewRows) -> pl.DataFrame:
        """Row number, the view's join keys and the as-of time of every entity row."""
        as_of = pl.col(self.timestamp_column).cast(_JOIN_TIME).alias(_AS_OF)
        return self.entities.select(*rows.entity_keys, as_of).with_row_index(_ROW)

    def _on_cluster(self, address: str) -> list[pl.DataFrame]:
        with ray_session(address) as resources:
            count = partition_count(resources, self.entities.height)
            calls = (
                (rows, keys, index, count)
                for rows in self.views
                for index, keys in enumerate(split(self._keys(rows), rows.entity_keys, count))
            )
            parts, self.ray_nodes = run_on_cluster(_ViewRows.join_partition, calls)
        return [pl.concat(parts[i * count : (i + 1) * count]) for i in range(len(self.views))]
