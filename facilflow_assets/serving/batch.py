"""Batch inference: a day of flights scored by a chosen model version, one partition a day."""

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from facilflow_assets import plots
from facilflow_assets.atomic_files import write_parquet_atomic
from facilflow_assets.features.feast_assets import (
    ENTITY_MODEL,
    REGISTRY_KEY,
    entity_frame,
    historical_features,
)
from facilflow_assets.features.flight_delay import FEATURE_SERVICE
from facilflow_assets.metadata import table_metadata
from facilflow_assets.registry.assets import REGISTERED_VERSION_KEY
from facilflow_assets.serving.models import PRODUCTION, load, resolve
from facilflow_assets.serving.scoring import resolve_mapping, score, score_on_cluster
from resources import FeastResource, MlflowResource, RayResource, StorageResource, TenantResource

DEPLOYMENT_GROUP = "deployment"
BATCH_PREDICTIONS_KEY = dg.AssetKey([DEPLOYMENT_GROUP, "batch_predictions"])
FLIGHT_TIME_ZONE = "America/New_York"
FLIGHT_DAYS = dg.DailyPartitionsDefinition(
    start_date="2013-01-01", end_date="2014-01-01", timezone=FLIGHT_TIME_ZONE
)
SCORE = "delay_probability"


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
    feature_service: str = Field(default=FEATURE_SERVICE, description="Feast feature service.")
    prediction_lead_minutes: int = Field(
        default=60, gt=0, description="Features as of this long before scheduled departure."
    )
    decision_threshold: float = Field(default=0.5, ge=0, le=1)
    on_ray_cluster: bool = Field(
        default=False,
        description="Score on the ray_cluster resource's cluster, one task per CPU spread over "
        "its nodes, for partitions too large for the step's process (a day of flights is not).",
    )


@dg.asset(
    key=BATCH_PREDICTIONS_KEY,
    group_name=DEPLOYMENT_GROUP,
    partitions_def=FLIGHT_DAYS,
    kinds={"lightgbm", "feast", "parquet"},
    deps=[REGISTRY_KEY, REGISTERED_VERSION_KEY],
    description="Every flight scheduled that day (New York time), scored with the chosen model "
    "version on its point-in-time features, in the step's process or (on_ray_cluster) spread "
    "over the Ray cluster's nodes.",
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
    ref = resolve(client, config.model or tenant.registered_model_name, config.version)
    model = load(client, ref)
    mapping = resolve_mapping(model, config.column_mapping)  # before the features are read
    flights = _flights_of(storage, day)
    store = feast.feature_store()
    frame = historical_features(
        store,
        store.get_feature_service(config.feature_service),
        entity_frame(flights, config.prediction_lead_minutes, "scheduled_departure_at"),
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
        "flight_id", "carrier_code", "origin_airport_code", "route", "scheduled_departure_at",
        *[pl.col(column).cast(pl.Float64).alias(name) for name, column in mapping.items()],
    ).with_columns(
        pl.Series(SCORE, scores),
        pl.lit(ref.name).alias("model"),
        pl.lit(ref.version).alias("model_version"),
    )  # fmt: skip
    path = write_parquet_atomic(predictions, storage.predictions_path(tenant.use_case, day))
    context.log.info(f"{day}: {predictions.height:,} flights scored with {ref.uri}")
    histogram = plots.png(plots.score_histogram(scores, config.decision_threshold))
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


def _flights_of(storage: StorageResource, day: str) -> pl.DataFrame:
    """The flights scheduled to leave on `day`, New York time, departed or not."""
    local_day = pl.col("scheduled_departure_at").dt.convert_time_zone(FLIGHT_TIME_ZONE).dt.date()
    return storage.read_warehouse(ENTITY_MODEL).filter(local_day == pl.lit(day).str.to_date())


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
