"""What a candidate must beat: the Production version, or a naive historical rate."""

from dataclasses import dataclass

import lightgbm as lgb
import mlflow.lightgbm
import numpy as np
import polars as pl
from mlflow.tracking import MlflowClient

from facilflow_assets.registry.stages import Stage, version_in_stage
from facilflow_assets.training.dataset import feature_matrix

CARRIER = "carrier_code"
HOUR = "flight_calendar__departure_hour"
PRIOR_FLIGHTS = 50  # a carrier-hour with few flights leans on the carrier's overall rate


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


def historical_rate_baseline(train: pl.DataFrame, holdout: pl.DataFrame, label: str) -> Baseline:
    """Each flight scored with the delay rate of its carrier at its departure hour in the
    train months, shrunk toward the carrier's rate where the carrier-hour has few flights."""
    overall = train[label].mean()
    carrier = train.group_by(CARRIER).agg(carrier_rate=pl.col(label).mean())
    carrier_hour = train.group_by(CARRIER, HOUR).agg(delays=pl.col(label).sum(), flights=pl.len())
    scored = (
        holdout.select(CARRIER, HOUR)
        .with_row_index("row")
        .join(carrier, on=CARRIER, how="left")
        .join(carrier_hour, on=[CARRIER, HOUR], how="left")
        .with_columns(pl.col("carrier_rate").fill_null(overall))
        .with_columns(
            rate=(pl.col("delays").fill_null(0) + PRIOR_FLIGHTS * pl.col("carrier_rate"))
            / (pl.col("flights").fill_null(0) + PRIOR_FLIGHTS)
        )
        .sort("row")
    )
    return Baseline(
        name="carrier-hour rate",
        description="delay rate of the flight's carrier at its scheduled hour in the train months",
        probabilities=scored["rate"].to_numpy(),
    )
