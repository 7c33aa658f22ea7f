"""A day's batch predictions, and the training run of a version that scored them, as every
monitoring asset reads them."""

import polars as pl
from mlflow.tracking import MlflowClient

from facilflow_assets.asset_keys import UseCaseKeys
from facilflow_assets.scope import ModelScope
from resources import StorageResource


class ScoredDayMissing(ValueError):
    """The day was not scored (or scored nothing): nothing to monitor."""


def scored_day(storage: StorageResource, scope: ModelScope, day: str) -> pl.DataFrame:
    """The day's scored rows: keys, time, model inputs, score and the version that scored."""
    path = storage.files(scope).predictions_path(day)
    if not path.exists():
        raise ScoredDayMissing(
            f"no batch predictions for {day} at {path}; materialize "
            f"{UseCaseKeys(scope).batch_predictions.to_user_string()} for that day first"
        )
    frame = pl.read_parquet(path)
    if frame.height == 0:
        raise ScoredDayMissing(f"the batch predictions of {day} have no rows to compare")
    return frame


def training_run(client: MlflowClient, scope: ModelScope, version: str) -> str:
    """The MLflow run that trained (and evaluated) the scope's registered `version`."""
    run_id = client.get_model_version(scope.registered_model_name, version).run_id
    if not run_id:
        raise ValueError(f"{scope.registered_model_name} version {version} has no training run")
    return run_id
