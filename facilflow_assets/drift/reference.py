"""The reference a model's drift is measured against, kept with the model's training run.

At evaluation, a sample of the training rows' features, each feature's drift threshold
calibrated on the training days, and the holdout predictions are logged to the candidate's
run under `reference/`; the version registered from that run points at them, so drift is
always measured against what that version learned from.
"""

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import mlflow.artifacts
import numpy as np
import polars as pl
from mlflow.tracking import MlflowClient

from facilflow_assets.atomic_files import write_json_atomic, write_parquet_atomic
from facilflow_assets.drift.calibration import day_thresholds
from facilflow_assets.training.dataset import TIME_COLUMN

REFERENCE_FOLDER = "reference"
FEATURES_FILE = "features.parquet"
PREDICTIONS_FILE = "holdout_predictions.parquet"
THRESHOLDS_FILE = "feature_thresholds.json"
PREDICTION = "prediction"
MAX_REFERENCE_ROWS = 100_000


def log_reference(
    train: pl.DataFrame, feature_names: list[str], holdout_scores: np.ndarray
) -> None:
    """Into the active run: up to 100,000 training rows' features, their calibrated drift
    thresholds and the holdout scores."""
    thresholds = day_thresholds(train, feature_names, TIME_COLUMN)
    sample = train.select(feature_names)
    if sample.height > MAX_REFERENCE_ROWS:
        sample = sample.sample(MAX_REFERENCE_ROWS, seed=0)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        write_parquet_atomic(sample, folder / FEATURES_FILE)
        write_parquet_atomic(pl.DataFrame({PREDICTION: holdout_scores}), folder / PREDICTIONS_FILE)
        write_json_atomic(thresholds, folder / THRESHOLDS_FILE)
        mlflow.log_artifacts(str(folder), REFERENCE_FOLDER)


def read_reference(client: MlflowClient, run_id: str, file: str) -> pl.DataFrame:
    """One reference frame of a training run, read through `client`."""
    with _downloaded(client, run_id, file) as path:
        return pl.read_parquet(path)


def read_thresholds(client: MlflowClient, run_id: str) -> dict[str, float] | None:
    """The calibrated drift threshold of each feature of a training run; None for a run
    evaluated before thresholds were calibrated."""
    listed = {Path(f.path).name for f in client.list_artifacts(run_id, REFERENCE_FOLDER)}
    if THRESHOLDS_FILE not in listed:
        return None
    with _downloaded(client, run_id, THRESHOLDS_FILE) as path:
        return json.loads(Path(path).read_text())


@contextmanager
def _downloaded(client: MlflowClient, run_id: str, file: str) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as scratch:
        yield mlflow.artifacts.download_artifacts(
            run_id=run_id,
            artifact_path=f"{REFERENCE_FOLDER}/{file}",
            dst_path=scratch,
            tracking_uri=client.tracking_uri,
        )
