"""Batch inference: a day of the use case's rows scored by a chosen model version, one
partition a day."""

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from facilflow_assets import plots
from facilflow_assets.asset_keys import DEPLOYMENT_GROUP, UseCaseKeys
from facilflow_assets.atomic_files import write_parquet_atomic
from facilflow_assets.features.feast_assets import historical_features
from facilflow_assets.features.target_rows import entity_frame, rows_of_day
from facilflow_assets.metadata import table_metadata
from facilflow_assets.scope import ModelScope
from facilflow_assets.serving.models import (
    PRODUCTION,
    STAGE_ALIASES,
    confirmed,
    decided_at,
    load,
    resolve,
)
from facilflow_assets.serving.scoring import resolve_mapping, score, score_on_cluster
from facilflow_assets.use_case import UseCase
from resources import FeastResource, MlflowResource, RayResource, StorageResource


def days_of(use_case: UseCase) -> dg.DailyPartitionsDefinition:
    """The use case's calendar as daily partitions, in its time zone."""
    calendar = use_case.calendar
    return dg.DailyPartitionsDefinition(
        start_date=calendar.start.isoformat(),
        end_date=calendar.end.isoformat(),
        timezone=calendar.time_zone,
    )


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
        default="",
        description="Feast feature service; the one the model version was trained on when empty.",
    )
    prediction_lead_minutes: int = Field(
        ge=0, description="Features as of this long before the target row's time."
    )
    decision_threshold: float | None = Field(
        default=None, gt=0, lt=1, description="Instead of the version's own threshold."
    )
    on_ray_cluster: bool = Field(
        default=False,
        description="Score on the ray_cluster resource's cluster, one task per CPU spread over "
        "its nodes, for partitions too large for the step's process.",
    )


def build_batch_assets(use_case: UseCase, scope: ModelScope) -> list[dg.AssetsDefinition]:
    """The use case's daily batch scores."""
    keys = UseCaseKeys(scope)
    target = use_case.target

    class UseCaseBatchScoringConfig(BatchScoringConfig):
        prediction_lead_minutes: int = Field(
            default=target.lead_minutes,
            ge=0,
            description=f"Features as of this long before the {target.subject}'s {target.time}.",
        )

    @dg.asset(
        key=keys.batch_predictions,
        group_name=DEPLOYMENT_GROUP,
        partitions_def=days_of(use_case),
        kinds={"lightgbm", "feast", "parquet"},
        deps=[keys.feast_registry, keys.registered_model_version],
        description=f"Every {target.subject} of the day ({use_case.calendar.time_zone} "
        "time), scored with the chosen model version on its point-in-time features, in the "
        "step's process or (on_ray_cluster) spread over the Ray cluster's nodes.",
    )
    def batch_predictions(
        context: dg.AssetExecutionContext,
        config: UseCaseBatchScoringConfig,
        storage: StorageResource,
        feast: FeastResource,
        mlflow: MlflowResource,
        ray_cluster: RayResource,
    ) -> dg.MaterializeResult:
        return score_day(context, config, use_case, scope, storage, feast, mlflow, ray_cluster)

    return [batch_predictions]


def score_day(
    context: dg.AssetExecutionContext,
    config: BatchScoringConfig,
    use_case: UseCase,
    scope: ModelScope,
    storage: StorageResource,
    feast: FeastResource,
    mlflow: MlflowResource,
    ray_cluster: RayResource,
) -> dg.MaterializeResult:
    """Score the partition's day of `use_case` rows; write them beside their inputs."""
    day = context.partition_key
    client = mlflow.client()
    by_stage = config.version in STAGE_ALIASES  # then the audit trail must confirm it holds it
    ref = (confirmed if by_stage else resolve)(
        client, config.model or scope.registered_model_name, config.version
    )
    feature_service = config.feature_service or ref.feature_service
    if not feature_service:
        raise ValueError(
            f"{ref.uri} records no feature service it was trained on; name one in the "
            "config field 'feature_service'"
        )
    model = load(client, ref)
    mapping = resolve_mapping(model, config.column_mapping)  # before the features are read
    target = use_case.target
    rows = rows_of_day(storage, use_case, day)
    store = feast.feature_store(scope)
    frame = historical_features(
        store,
        store.get_feature_service(feature_service),
        entity_frame(rows, target, config.prediction_lead_minutes, target.time),
    )
    where = f"the feature frame of {day}"
    if config.on_ray_cluster:
        scores, nodes = score_on_cluster(ray_cluster, model, frame, mapping, where)
        context.log.info(f"{day}: scored on {nodes} Ray node(s)")
    else:
        scores, nodes = score(model, frame, mapping, where), 0
    # The model's inputs are kept beside each score, under their input names: the drift
    # assets compare them with the model's reference. Numbers as Float64, categories as text.
    predictions = frame.select(
        *target.keys,
        target.time,
        *[
            pl.col(column).cast(pl.String if name in model.categories else pl.Float64).alias(name)
            for name, column in mapping.items()
        ],
    ).with_columns(
        pl.Series(use_case.score, scores),
        pl.lit(ref.name).alias("model"),
        pl.lit(ref.version).alias("model_version"),
    )
    path = write_parquet_atomic(predictions, storage.files(scope).predictions_path(day))
    context.log.info(f"{day}: {predictions.height:,} {target.subject}s scored with {ref.uri}")
    threshold = decided_at(ref, use_case, config.decision_threshold)
    histogram = plots.png(plots.score_histogram(scores, threshold, use_case.label, target.subject))
    return dg.MaterializeResult(
        metadata={
            **table_metadata(predictions, path),
            "model_uri": ref.uri,
            "model_version": ref.version,
            "ray_nodes": nodes,
            **_distribution(scores, threshold),
            "score_histogram": dg.MetadataValue.md(
                plots.markdown_image(histogram, "score distribution")
            ),
        }
    )


def _distribution(scores: np.ndarray, threshold: float | None) -> dict[str, float]:
    """Mean and deciles of the day's predictions, and the share at or above the decision
    threshold (binary)."""
    above = {} if threshold is None else {"share_above_threshold": float("nan")}
    if len(scores) == 0:
        return {"score_mean": float("nan"), **above}
    quantiles = np.quantile(scores, [0.1, 0.5, 0.9])
    if threshold is not None:
        above["share_above_threshold"] = float((scores >= threshold).mean())
    return {
        "score_mean": float(scores.mean()),
        "score_p10": float(quantiles[0]),
        "score_p50": float(quantiles[1]),
        "score_p90": float(quantiles[2]),
        **above,
    }
