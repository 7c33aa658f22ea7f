"""What a candidate must beat: the Production version, or a naive historical rate."""

from dataclasses import dataclass

import lightgbm as lgb
import mlflow.lightgbm
import numpy as np
import polars as pl
from mlflow.tracking import MlflowClient

from facilflow_assets.registry.stages import Stage, version_in_stage
from facilflow_assets.training.dataset import feature_matrix
from facilflow_assets.use_case import BaselineSpec


class BaselineError(ValueError):
    """The baseline cannot score the holdout rows."""


@dataclass(frozen=True)
class Baseline:
    name: str
    description: str
    probabilities: np.ndarray
    model_version: str | None = None


def production_baseline(
    client: MlflowClient, registered_model: str, holdout: pl.DataFrame
) -> Baseline | None:
    """The version in Production scored on the holdout, or None when there is none."""
    version = version_in_stage(client, registered_model, Stage.PRODUCTION)
    if version is None:
        return None
    booster: lgb.Booster = mlflow.lightgbm.load_model(
        f"models:/{registered_model}/{version.version}"
    )
    missing = [name for name in booster.feature_name() if name not in holdout.columns]
    if missing:
        raise BaselineError(
            f"the Production version {version.version} of {registered_model} needs features "
            f"the training set lacks: {', '.join(missing)}"
        )
    return Baseline(
        name=f"production v{version.version}",
        description=f"{registered_model} version {version.version}, now in Production",
        probabilities=booster.predict(feature_matrix(holdout, booster.feature_name())),
        model_version=version.version,
    )


def historical_rate_baseline(
    train: pl.DataFrame, holdout: pl.DataFrame, label: str, spec: BaselineSpec
) -> Baseline:
    """Each holdout row scored with the label's rate in its group (`spec.group_by`) in the
    train months, shrunk toward the rate of its coarser group (the first column's, or the
    overall rate for one column) where the group has few rows."""
    groups, coarser = spec.group_by, spec.group_by[:-1]
    overall = train[label].mean()
    scored = holdout.select(groups).with_row_index("row")
    if coarser:
        coarse_rates = train.group_by(coarser).agg(prior_rate=pl.col(label).mean())
        scored = scored.join(coarse_rates, on=coarser, how="left")
    else:
        scored = scored.with_columns(prior_rate=pl.lit(None, pl.Float64))
    counts = train.group_by(groups).agg(positives=pl.col(label).sum(), rows=pl.len())
    scored = (
        scored.join(counts, on=groups, how="left")
        .with_columns(pl.col("prior_rate").fill_null(overall))
        .with_columns(
            rate=(pl.col("positives").fill_null(0) + spec.prior_rows * pl.col("prior_rate"))
            / (pl.col("rows").fill_null(0) + spec.prior_rows)
        )
        .sort("row")
    )
    return Baseline(
        name=spec.name, description=spec.description, probabilities=scored["rate"].to_numpy()
    )
