"""The reference a model's drift is measured against, kept with the model's training run.

At evaluation, a sample of the training rows' features and the holdout predictions are
logged to the candidate's run under `reference/`; the version registered from that run
points at them, so drift is always measured against what that version learned from.
"""

import tempfile
from pathlib import Path

import mlflow
import mlflow.artifacts
import numpy as np
import polars as pl
from mlflow.tracking import MlflowClient

from facilflow_assets.atomic_files import write_parquet_atomic

REFERENCE_FOLDER = "reference"
FEATURES_FILE = "features.parquet"
PREDICTIONS_FILE = "holdout_predictions.parquet"
PREDICTION = "prediction"
MAX_REFERENCE_ROWS = 100_000


def log_reference(
    train: pl.DataFrame, feature_names: list[str], holdout_scores: np.ndarray
) -> None:
    """Into the active run: up to 100,000 training rows' features and the holdout scores."""
    sample = train.select(feature_names)
    if sample.height > MAX_REFERENCE_ROWS:
        sample = sample.sample(MAX_REFERENCE_ROWS, seed=0)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        write_parquet_atomic(sample, folder / FEATURES_FILE)
        write_parquet_atomic(pl.DataFrame({PREDICTION: holdout_scores}), folder / PREDICTIONS_FILE)
        mlflow.log_artifacts(str(folder), REFERENCE_FOLDER)


def read_reference(client: MlflowClient, run_id: str, file: str) -> pl.DataFrame:
    """One reference file of a training run, read through `client`."""
    with tempfile.TemporaryDirectory() as scratch:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id,
            artifact_path=f"{REFERENCE_FOLDER}/{file}",
            dst_path=scratch,
            tracking_uri=client.tracking_uri,
        )
        return pl.read_parquet(path)
