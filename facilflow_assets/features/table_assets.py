"""Feature table assets: each spec table computed from its warehouse model, as parquet."""

import dagster as dg
import polars as pl

from facilflow_assets.atomic_files import write_parquet_atomic
from facilflow_assets.feature_spec import FeatureTableSpec
from facilflow_assets.features.checks import check_specs, evaluate_checks
from facilflow_assets.features.data_check import require_fitting_target
from facilflow_assets.features.engine import FeatureDataError, check_source, compute_features
from facilflow_assets.features.lineup import service_lineup
from facilflow_assets.features.service_versions import table_with_kept
from facilflow_assets.metadata import table_metadata
from facilflow_assets.scope import ModelScope
from facilflow_assets.use_case import UseCase
from resources import FeastResource, MlflowResource, StorageResource

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
        frame = compute_features(table, source.lazy())
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
        yield dg.MaterializeResult(metadata=_feature_metadata(table, frame, path))

    return _feature_table


def _feature_metadata(table: FeatureTableSpec, frame: pl.DataFrame, path) -> dict:
    times = frame[table.timestamp_column]
    return {
        **table_metadata(frame, path),
        "entities": dg.MetadataValue.int(frame.select(table.source.entity).n_unique()),
        "first_event": dg.MetadataValue.text(str(times.min())),
        "last_event": dg.MetadataValue.text(str(times.max())),
        "features": dg.MetadataValue.int(len(table.keep) + len(table.features)),
    }
