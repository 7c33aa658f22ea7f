"""Feast assets: the registry, the online store, and the point-in-time training set."""

import hashlib
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
import polars as pl
import polars.selectors as cs
from pydantic import Field

from facilflow_assets.asset_keys import FEATURES_GROUP, UseCaseKeys
from facilflow_assets.atomic_files import write_parquet_atomic
from facilflow_assets.features.data_check import require_fitting_target
from facilflow_assets.features.feast_objects import repo_contents
from facilflow_assets.features.lineup import current_service, service_lineup
from facilflow_assets.features.target_rows import EVENT_TIME, entity_frame, labelled_rows
from facilflow_assets.metadata import table_metadata
from facilflow_assets.scope import ModelScope
from facilflow_assets.use_case import UseCase
from resources import FeastResource, MlflowResource, StorageResource

ROW_ORDER = "__row"


class MaterializeConfig(dg.Config):
    end: str | None = Field(
        default=None,
        description="Load feature rows up to this UTC time (ISO 8601); the newest row by default.",
    )

    def end_time(self) -> datetime | None:
        if self.end is None:
            return None
        try:
            end = datetime.fromisoformat(self.end)
        except ValueError:
            raise ValueError(
                f"online_store config field 'end': {self.end!r} is not an ISO 8601 time "
                "such as 2013-12-31T23:00:00"
            ) from None
        return end if end.tzinfo else end.replace(tzinfo=UTC)


def build_feast_assets(use_case: UseCase, scope: ModelScope) -> list[dg.AssetsDefinition]:
    """The use case's Feast registry, online store and training set."""
    keys = UseCaseKeys(scope)
    target = use_case.target

    @dg.asset(
        key=keys.feast_registry,
        group_name=FEATURES_GROUP,
        kinds={"feast"},
        deps=[keys.feature_table(t.name) for t in use_case.tables],
        description=f"The Feast registry of project {scope.feast_project}, made to match the "
        "use case's file (as `feast apply`); a new version of the feature service when the "
        "features change, the older ones kept while models read them.",
    )
    def feast_registry(
        context: dg.AssetExecutionContext,
        feast: FeastResource,
        mlflow: MlflowResource,
        storage: StorageResource,
    ) -> dg.MaterializeResult:
        lineup = service_lineup(use_case, scope, feast, mlflow)
        contents = repo_contents(use_case, storage.files(scope).features_dir, lineup)
        changed = feast.apply(scope, contents)
        kept = [v.name for v in lineup.kept]
        context.log.info(
            f"feature service {lineup.current.name}"
            + (f"; kept for models in use: {', '.join(kept)}" if kept else "")
            + (
                f"; features changed, reloaded in full online: {', '.join(changed)}"
                if changed
                else ""
            )
        )
        return dg.MaterializeResult(
            metadata={
                "project": scope.feast_project,
                "current_feature_service": lineup.current.name,
                "kept_feature_services": dg.MetadataValue.json(kept),
                "entities": len(contents.entities),
                "feature_views": dg.MetadataValue.json(
                    sorted(v.name for v in contents.feature_views)
                ),
                "on_demand_feature_views": len(contents.on_demand_feature_views),
                "feature_services": dg.MetadataValue.json(
                    sorted(s.name for s in contents.feature_services)
                ),
                "views_to_reload": dg.MetadataValue.json(changed),
            }
        )

    @dg.asset(
        key=keys.online_store,
        group_name=FEATURES_GROUP,
        kinds={"feast"},
        deps=[keys.feast_registry],
        description="Latest feature values per entity in the online store, loaded "
        "incrementally; a view new or whose features changed is loaded in full.",
    )
    def online_store(
        context: dg.AssetExecutionContext, config: MaterializeConfig, feast: FeastResource
    ) -> dg.MaterializeResult:
        return load_online_store(context, config, feast.feature_store(scope), feast.online_store)

    class TrainingSetConfig(dg.Config):
        feature_service: str = Field(
            default="",
            description="Feast feature service; the version of the use case's current "
            "features when empty.",
        )
        prediction_lead_minutes: int = Field(
            default=target.lead_minutes,
            ge=0,
            description=f"Features are as of this long before the {target.subject}'s "
            f"{target.time} (the use case's lead by default).",
        )

    @dg.asset(
        key=keys.training_set,
        group_name=FEATURES_GROUP,
        kinds={"feast", "polars", "parquet"},
        deps=[keys.feast_registry, dg.AssetKey(target.model.split("/"))],
        description=f"Every {target.subject} with a known label and the feature service's "
        "features, joined point-in-time through Feast's get_historical_features.",
    )
    def training_set(
        context: dg.AssetExecutionContext,
        config: TrainingSetConfig,
        feast: FeastResource,
        storage: StorageResource,
    ) -> dg.MaterializeResult:
        require_fitting_target(use_case, storage)
        entity_df = build_entity_frame(storage, use_case, config.prediction_lead_minutes)
        label = use_case.label
        store = feast.feature_store(scope)
        service = store.get_feature_service(
            config.feature_service or current_service(store, use_case)
        )
        frame, ray_nodes = retrieve(store, service, entity_df)
        path = write_parquet_atomic(frame, storage.files(scope).training_set_path(service.name))
        version = data_version(frame)
        feature_columns = [c for c in frame.columns if "__" in c]
        context.log.info(f"training set: {frame.height:,} rows x {len(feature_columns)} features")
        return dg.MaterializeResult(
            data_version=dg.DataVersion(version),
            metadata={
                **table_metadata(frame, path),
                "data_version": version,
                "feature_service": service.name,
                "features": len(feature_columns),
                "entity_columns": dg.MetadataValue.json([*target.keys, EVENT_TIME]),
                "label": label,
                **label_summary(frame[label], use_case.task),
                "prediction_lead_minutes": config.prediction_lead_minutes,
                "join_ray_nodes": ray_nodes,
            },
        )

    return [feast_registry, online_store, training_set]


def load_online_store(
    context: dg.AssetExecutionContext, config: MaterializeConfig, store, kind: str
) -> dg.MaterializeResult:
    """Materialize every view of `store`: a first load of the values still within their
    view's TTL at its newest row, incremental loads after."""
    views = store.list_feature_views()
    end = config.end_time() or _newest_row(views) + timedelta(microseconds=1)
    fresh = [v for v in views if not v.materialization_intervals]
    loaded = [v.name for v in views if v.materialization_intervals]
    for view in fresh:
        # Not from now - TTL, as Feast's incremental default would: that skips historical
        # data entirely. A value older than the TTL at the view's newest row is past serving
        # age, so it is not loaded (a flight calendar's past flights, for one).
        start = _first_load_start(view, end)
        context.log.info(f"first load of {view.name} from {start} to {end}")
        store.materialize(start_date=start, end_date=end, feature_views=[view.name])
    if loaded:
        context.log.info(f"incremental load of {loaded} up to {end}")
        store.materialize_incremental(end_date=end, feature_views=loaded)
    intervals = {
        v.name: [f"{a.isoformat()} .. {b.isoformat()}" for a, b in v.materialization_intervals]
        for v in store.list_feature_views()
    }
    return dg.MaterializeResult(
        metadata={
            "loaded_until": end.isoformat(),
            "first_loads": dg.MetadataValue.json([v.name for v in fresh]),
            "incremental_loads": dg.MetadataValue.json(loaded),
            "intervals": dg.MetadataValue.json(intervals),
            "online_store": kind,
        }
    )


def _first_load_start(view, end: datetime) -> datetime:
    """The view's oldest row, or its newest row less its TTL when that is later (a TTL of
    0 keeps every value)."""
    times = _event_times([view])
    oldest, newest = times["first"][0], min(times["last"][0], end)
    if not view.ttl:
        return oldest
    return max(oldest, newest - view.ttl)


def label_summary(label: pl.Series, task: str) -> dict[str, float]:
    """The label's share of positives (binary) or its mean and spread (regression)."""
    if task == "binary":
        return {"label_positive_share": _number(label.mean(), "mean")}
    return {"label_mean": _number(label.mean(), "mean"), "label_std": _number(label.std(), "std")}


def _number(value: object, what: str) -> float:
    if not isinstance(value, int | float):
        raise TypeError(f"the label's {what} is {value!r}, not a number")
    return float(value)


def _event_times(views) -> pl.DataFrame:
    frames = [
        pl.scan_parquet(view.batch_source.path).select(
            pl.col(view.batch_source.timestamp_field).alias("t")
        )
        for view in views
    ]
    return pl.concat(frames).select(first=pl.col("t").min(), last=pl.col("t").max()).collect()


def _newest_row(views) -> datetime:
    return _event_times(views)["last"][0]


def build_entity_frame(storage: StorageResource, use_case: UseCase, lead_minutes: int):
    """One row per labelled target row: keys, prediction time and label."""
    rows = labelled_rows(storage, use_case)
    return entity_frame(rows, use_case.target, lead_minutes, use_case.label)


def historical_features(store, service, entity_df: pl.DataFrame) -> pl.DataFrame:
    """The service's features for each entity row as of its event time, through Feast."""
    return retrieve(store, service, entity_df)[0]


def retrieve(store, service, entity_df: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """`historical_features`, and how many Ray nodes joined them (0: this process)."""
    job = store.get_historical_features(
        entity_df=feast_entity_frame(entity_df), features=service, full_feature_names=True
    )
    # Arrow, not pandas: no copy of the set on the way, and integers with gaps stay integers.
    # A store may name UTC 'Etc/UTC'; the lake says 'UTC'.
    frame = pl.DataFrame(pl.from_arrow(job.to_arrow())).with_columns(
        cs.datetime(time_zone="*").dt.convert_time_zone("UTC")
    )
    return frame, getattr(job, "ray_nodes", 0)


def feast_entity_frame(entity_df: pl.DataFrame) -> pd.DataFrame:
    """The entity rows as Feast takes them: pandas, its columns backed by Arrow (no Python
    object per text value), its times numpy datetimes, which every Feast store reads."""
    frame = entity_df.to_pandas(use_pyarrow_extension_array=True)
    for column in entity_df.select(cs.datetime()).columns:
        frame[column] = entity_df[column].to_pandas()
    return frame


def features_on_rows(store, service: str, rows: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Another service's features for labelled `rows` (entity keys and event time), in their
    order: what a model trained on that service reads for the same rows."""
    entity_df = rows.select(*keys, EVENT_TIME).with_row_index(ROW_ORDER)
    frame = historical_features(store, store.get_feature_service(service), entity_df)
    return frame.sort(ROW_ORDER).drop(ROW_ORDER)


def data_version(frame: pl.DataFrame) -> str:
    """A content hash of a frame: the same rows and columns give the same version."""
    digest = hashlib.sha256(str(frame.schema).encode())
    digest.update(frame.sort(frame.columns[0]).hash_rows(seed=0).to_numpy().tobytes())
    return digest.hexdigest()[:16]
