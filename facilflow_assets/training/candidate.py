"""The trained candidate handed from training to evaluation and registration."""

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow.artifacts
from mlflow.models import Model, ModelSignature
from mlflow.tracking import MlflowClient

from facilflow_assets.atomic_files import write_json_atomic
from facilflow_assets.features.service_versions import FEATURE_SERVICE_TAG

CANDIDATE_FILE = "candidate.json"  # the latest candidate of a use case, in its models folder
MODEL_URI_TAG = "facilflow.model_uri"  # set on a training run once its model is logged


class CandidateError(ValueError):
    """The run named as a candidate holds no model FacilFlow trained."""


SPLIT_PARAMS = ("train_start", "validation_start", "holdout_start")


@dataclass(frozen=True)
class Candidate:
    run_id: str
    experiment_id: str
    model_uri: str
    feature_service: str
    data_version: str
    feature_names: list[str]
    train_start: str
    validation_start: str
    holdout_start: str
    valid_metrics: dict[str, float]  # the final fit's validation metrics (valid_auc, ...)

    def write(self, path: Path) -> None:
        write_json_atomic(asdict(self), path)

    @classmethod
    def read(cls, path: Path) -> "Candidate":
        if not path.exists():
            raise FileNotFoundError(f"no trained candidate at {path}; materialize training first")
        return cls(**json.loads(path.read_text()))

    @classmethod
    def from_run(cls, client: MlflowClient, run_id: str) -> "Candidate":
        """The candidate trained by `run_id`, read through `client` alone."""
        run = client.get_run(run_id)
        tags, params = run.data.tags, run.data.params
        missing = [
            key
            for key in (MODEL_URI_TAG, FEATURE_SERVICE_TAG, "facilflow.data_version")
            if key not in tags
        ] + [key for key in SPLIT_PARAMS if key not in params]
        if missing:
            raise CandidateError(
                f"run {run_id} is not a FacilFlow training run: it lacks {', '.join(missing)}"
            )
        signature = _signature(client, tags[MODEL_URI_TAG])
        return cls(
            run_id=run_id,
            experiment_id=run.info.experiment_id,
            model_uri=tags[MODEL_URI_TAG],
            feature_service=tags[FEATURE_SERVICE_TAG],
            data_version=tags["facilflow.data_version"],
            feature_names=[str(name) for name in signature.inputs.input_names()],
            train_start=params["train_start"],
            validation_start=params["validation_start"],
            holdout_start=params["holdout_start"],
            valid_metrics={
                name.removeprefix("final_"): value
                for name, value in run.data.metrics.items()
                if name.startswith("final_valid_")
            },
        )


def _signature(client: MlflowClient, model_uri: str) -> ModelSignature:
    """The logged model's signature, from its MLmodel file in the client's store."""
    logged = client.get_logged_model(model_uri.removeprefix("models:/"))
    with tempfile.TemporaryDirectory() as scratch:
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{logged.artifact_location.rstrip('/')}/MLmodel",
            dst_path=scratch,
            tracking_uri=client.tracking_uri,
        )
        return Model.load(path).signature
