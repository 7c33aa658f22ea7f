"""Feature table assets: each spec table computed from its warehouse model, as parquet."""

import dagster as dg
import polars as pl

from facilflow_assets.atomic_files import write_parquet_atomic
from facilflow_assets.feature_spec import FeatureTableSpec
from facilflow_assets.features.checks import check_specs, evaluate_checks
from facilflow_assets.features.cluster_tables import compute_on_cluster
from facilflow_assets.features.data_check import require_fitting_target
from facilflow_assets.features.engine import FeatureDataError, check_source, compute_features
from facilflow_assets.features.lineup import service_lineup
from facilflow_assets.features.service_versions import table_with_kept
from facilflow_assets.metadata import table_metadata
from facilflow_assets.scope import ModelScope
from facilflow_assets.use_case import UseCase
from resources import FeastResource, MlflowResource, RayResource, StorageResource

FEATURES_GROUP = "features"


def build_feature_table_assets(use_case: UseCase, scope: ModelScope) -> list[dg.AssetsDefinition]:
    """One asset per feature table of the use case, each read from its warehouse model."""
    return [build_feature_table_asset(use_case, table, scope) for table in use_case.tables]


def build_feature_table_asset(
    use_case: UseCase, declared: FeatureTableSpec, scope: ModelScope
) -> dg.AssetsDefinition:
    """The asset computing `declared`, and the features of it that older feature service
    versions still read for models in use."""
    key = scope.key(FEATURES_GROUP, declared.name)

    @dg.asset(
        key=key,
        group_name=FEATURES_GROUP,
        kinds={"polars", "parquet"},
        deps=[dg.AssetKey(declared.source.model.split("/"))],
        check_specs=check_specs(declared, key),
        description=declared.description,
        metadata={"entity": ", ".join(declared.source.entity), "source": declared.source.model},
    )
    def _feature_table(
        context: dg.AssetExecutionContext,
        storage: StorageResource,
        feast: FeastResource,
        mlflow: MlflowResource,
        ray_cluster: RayResource,
    ):
        require_fitting_target(use_case, storage)  # seconds, before any table is computed
        kept = service_lineup(use_case, scope, feast, mlflow).kept
        table = table_with_kept(declared, kept)
        if table != declared:
            context.log.info(
                f"{table.name}: also computing what {', '.join(v.name for v in kept)} read"
            )
        source = storage.read_warehouse(table.source.model)
        check_source(table, source.schema)
        frame, placement = _compute(context, table, source, ray_cluster)
        source_latest = source[table.source.timestamp].max() if table.source.timestamp else None
        results = evaluate_checks(table, frame, source_latest)
        failed = [r.check_name for r in results if not r.passed]
        # Results first, so the UI shows which check failed even when nothing is written.
        yield from results
        if failed:
            raise FeatureDataError(
                f"feature table '{table.name}' failed its checks {failed}; "
                "the previous version is kept"
            )
        path = write_parquet_atomic(frame, storage.files(scope).feature_table_path(table.name))
        context.log.info(f"{table.name}: {frame.height:,} rows, {frame.width} columns -> {path}")
        yield dg.MaterializeResult(metadata={**_feature_metadata(table, frame, path), **placement})

    return _feature_table


def _compute(
    context: dg.AssetExecutionContext,
    table: FeatureTableSpec,
    source: pl.DataFrame,
    ray_cluster: RayResource,
) -> tuple[pl.DataFrame, dict[str, str | int]]:
    """The table, in this process or, with a Ray cluster configured, split by entity over
    its nodes; and where it was computed, as metadata."""
    if not ray_cluster.address:
        return compute_features(table, source.lazy()), {}
    run = compute_on_cluster(table, source, ray_cluster)
    if run.partitioned_by:
        context.log.info(
            f"{table.name}: {run.partitions} partitions by {', '.join(run.partitioned_by)} "
            f"computed on {run.nodes} Ray node(s)"
        )
    else:
        context.log.info(
            f"{table.name}: computed in this process; a window of it spans entities, so it "
            "cannot be split by entity"
        )
    return run.frame, {
        "ray_partitions": run.partitions,
        "ray_nodes": run.nodes,
        "partitioned_by": ", ".join(run.partitioned_by) or "(not split)",
    }


def _feature_metadata(table: FeatureTableSpec, frame: pl.DataFrame, path) -> dict:
    times = frame[table.timestamp_column]
    return {
        **table_metadata(frame, path),
        "entities": dg.MetadataValue.int(frame.select(table.source.entity).n_unique()),
        "first_event": dg.MetadataValue.text(str(times.min())),
        "last_event": dg.MetadataValue.text(str(times.max())),
        "features": dg.MetadataValue.int(len(table.keep) + len(table.features)),
    }
