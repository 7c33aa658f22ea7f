"""What a candidate must beat: the Production version, or the label's historical mean per
group (a rate, for a 0/1 label)."""

from collections.abc import Callable
from dataclasses import dataclass

import lightgbm as lgb
import mlflow.lightgbm as mlflow_lightgbm
import numpy as np
import polars as pl
from mlflow.tracking import MlflowClient

from facilflow_assets.features.service_versions import FEATURE_SERVICE_TAG
from facilflow_assets.governance.stages import Stage, version_in_stage
from facilflow_assets.training.boosting import frame_predictions
from facilflow_assets.use_case import BaselineSpec


class BaselineError(ValueError):
    """The baseline cannot score the holdout rows."""


@dataclass(frozen=True)
class Baseline:
    name: str
    description: str
    predictions: np.ndarray  # probabilities (binary) or amounts (regression), per holdout row
    model_version: str | None = None


def load_booster(model_uri: str) -> lgb.Booster:
    """The LightGBM booster of an MLflow model (a version's URI, or its files' directory)."""
    booster = mlflow_lightgbm.load_model(model_uri)
    if not isinstance(booster, lgb.Booster):
        raise TypeError(f"{model_uri} holds a {type(booster).__name__}, not a LightGBM Booster")
    return booster


def production_baseline(
    client: MlflowClient,
    registered_model: str,
    holdout: pl.DataFrame,
    features_of: Callable[[str], pl.DataFrame],
) -> Baseline | None:
    """The version in Production scored on the holdout rows, or None when there is none.
    It reads the features of its own service: `features_of(service)` gives them for the
    holdout rows, in their order."""
    version = version_in_stage(client, registered_model, Stage.PRODUCTION)
    if version is None:
        return None
    booster = load_booster(f"models:/{registered_model}/{version.version}")
    service = version.tags.get(FEATURE_SERVICE_TAG)
    rows = features_of(service) if service else holdout
    missing = [name for name in booster.feature_name() if name not in rows.columns]
    if missing:
        raise BaselineError(
            f"the Production version {version.version} of {registered_model} needs features "
            f"its feature service {service} does not give: {', '.join(missing)}"
        )
    return Baseline(
        name=f"production v{version.version}",
        description=f"{registered_model} version {version.version}, now in Production, on "
        f"its own features ({service})",
        predictions=frame_predictions(booster, rows),
        model_version=version.version,
    )


def historical_mean_baseline(
    train: pl.DataFrame, holdout: pl.DataFrame, label: str, spec: BaselineSpec
) -> Baseline:
    """Each holdout row scored with the label's mean in its group (`spec.group_by`) in the
    train months (its rate, for a 0/1 label), shrunk toward the mean of its coarser group
    (the first column's, or the overall mean for one column) where the group has few rows."""
    groups, coarser = spec.group_by, spec.group_by[:-1]
    value = pl.col(label).cast(pl.Float64)
    overall = train.select(value.mean()).item()
    scored = holdout.select(groups).with_row_index("row")
    if coarser:
        coarse_means = train.group_by(coarser).agg(prior_mean=value.mean())
        scored = scored.join(coarse_means, on=coarser, how="left")
    else:
        scored = scored.with_columns(prior_mean=pl.lit(None, pl.Float64))
    sums = train.group_by(groups).agg(total=value.sum(), rows=pl.len())
    scored = (
        scored.join(sums, on=groups, how="left")
        .with_columns(pl.col("prior_mean").fill_null(overall))
        .with_columns(
            mean=(pl.col("total").fill_null(0) + spec.prior_rows * pl.col("prior_mean"))
            / (pl.col("rows").fill_null(0) + spec.prior_rows)
        )
        .sort("row")
    )
    return Baseline(
        name=spec.name, description=spec.description, predictions=scored["mean"].to_numpy()
    )
