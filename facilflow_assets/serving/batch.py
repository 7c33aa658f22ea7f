"""Batch inference: a day of the use case's rows scored by a chosen model version, one
partition a day."""

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from facilflow_assets import plots
from facilflow_assets.atomic_files import write_parquet_atomic
from facilflow_assets.features.feast_assets import REGISTRY_KEY, historical_features
from facilflow_assets.features.target_rows import entity_frame, rows_of_day
from facilflow_assets.metadata import table_metadata
from facilflow_assets.registry.assets import REGISTERED_VERSION_KEY
from facilflow_assets.serving.models import PRODUCTION, STAGE_ALIASES, confirmed, load, resolve
from facilflow_assets.serving.scoring import resolve_mapping, score, score_on_cluster
from facilflow_assets.use_case import current_use_case
from resources import FeastResource, MlflowResource, RayResource, StorageResource, TenantResource

DEPLOYMENT_GROUP = "deployment"
BATCH_PREDICTIONS_KEY = dg.AssetKey([DEPLOYMENT_GROUP, "batch_predictions"])
USE_CASE = current_use_case()
DAYS = dg.DailyPartitionsDefinition(
    start_date=USE_CASE.calendar.start.isoformat(),
    end_date=USE_CASE.calendar.end.isoformat(),
    timezone=USE_CASE.calendar.time_zone,
)
SCORE = USE_CASE.score


class BatchScoringConfig(dg.Config):
    model: str = Field(
        default="", description="Registered model name; the use case's model when empty."
    )
    version: str = Field(
        default=PRODUCTION,
        description="A version number, or Production or Staging, resolved when the run starts.",
    )
    column_mapping: dict[str, str] = Field(
        default_factory=dict,
        description="Model input -> column of the day's feature frame. Inputs not named here "
        "are read from the column of the same name; each is checked against the signature.",
    )
    feature_service: str = Field(
        default=USE_CASE.feature_service, description="Feast feature service."
    )
    prediction_lead_minutes: int = Field(
        default=USE_CASE.target.lead_minutes,
        ge=0,
        description=f"Features as of this long before the {USE_CASE.target.subject}'s "
        f"{USE_CASE.target.time}.",
    )
    decision_threshold: float = Field(default=0.5, ge=0, le=1)
    on_ray_cluster: bool = Field(
        default=False,
        description="Score on the ray_cluster resource's cluster, one task per CPU spread over "
        "its nodes, for partitions too large for the step's process.",
    )


@dg.asset(
    key=BATCH_PREDICTIONS_KEY,
    group_name=DEPLOYMENT_GROUP,
    partitions_def=DAYS,
    kinds={"lightgbm", "feast", "parquet"},
    deps=[REGISTRY_KEY, REGISTERED_VERSION_KEY],
    description=f"Every {USE_CASE.target.subject} of the day ({USE_CASE.calendar.time_zone} "
    "time), scored with the chosen model version on its point-in-time features, in the step's "
    "process or (on_ray_cluster) spread over the Ray cluster's nodes.",
)
def batch_predictions(
    context: dg.AssetExecutionContext,
    config: BatchScoringConfig,
    storage: StorageResource,
    feast: FeastResource,
    mlflow: MlflowResource,
    tenant: TenantResource,
    ray_cluster: RayResource,
) -> dg.MaterializeResult:
    day = context.partition_key
    client = mlflow.client()
    by_stage = config.version in STAGE_ALIASES  # then the audit trail must confirm it holds it
    ref = (confirmed if by_stage else resolve)(
        client, config.model or tenant.registered_model_name, config.version
    )
    model = load(client, ref)
    mapping = resolve_mapping(model, config.column_mapping)  # before the features are read
    target = USE_CASE.target
    rows = rows_of_day(storage, USE_CASE, day)
    store = feast.feature_store()
    frame = historical_features(
        store,
        store.get_feature_service(config.feature_service),
        entity_frame(rows, target, config.prediction_lead_minutes, target.time),
    )
    where = f"the feature frame of {day}"
    if config.on_ray_cluster:
        scores, nodes = score_on_cluster(ray_cluster, model, frame, mapping, where)
        context.log.info(f"{day}: scored on {nodes} Ray node(s)")
    else:
        scores, nodes = score(model, frame, mapping, where), 0
    # The model's inputs are kept beside each score, under their input names: the drift
    # assets compare them with the model's reference.
    predictions = frame.select(
        *target.keys,
        target.time,
        *[pl.col(column).cast(pl.Float64).alias(name) for name, column in mapping.items()],
    ).with_columns(
        pl.Series(SCORE, scores),
        pl.lit(ref.name).alias("model"),
        pl.lit(ref.version).alias("model_version"),
    )
    path = write_parquet_atomic(predictions, storage.predictions_path(tenant.use_case, day))
    context.log.info(f"{day}: {predictions.height:,} {target.subject}s scored with {ref.uri}")
    histogram = plots.png(
        plots.score_histogram(
            scores, config.decision_threshold, USE_CASE.label, USE_CASE.target.subject
        )
    )
    return dg.MaterializeResult(
        metadata={
            **table_metadata(predictions, path),
            "model_uri": ref.uri,
            "model_version": ref.version,
            "ray_nodes": nodes,
            **_distribution(scores, config.decision_threshold),
            "score_histogram": dg.MetadataValue.md(
                plots.markdown_image(histogram, "score distribution")
            ),
        }
    )


def _distribution(scores: np.ndarray, threshold: float) -> dict[str, float]:
    if len(scores) == 0:
        return {"score_mean": float("nan"), "share_above_threshold": float("nan")}
    quantiles = np.quantile(scores, [0.1, 0.5, 0.9])
    return {
        "score_mean": float(scores.mean()),
        "score_p10": float(quantiles[0]),
        "score_p50": float(quantiles[1]),
        "score_p90": float(quantiles[2]),
        "share_above_threshold": float((scores >= threshold).mean()),
    }
