"""Registered model versions as the serving side loads them: resolved, downloaded, checked.

Everything goes through an explicit MLflow client, never the process-wide tracking URI, so
a Ray replica or a Dagster step loads from the store its resource names.
"""

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import lightgbm
import mlflow.artifacts
import numpy as np
import polars as pl
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.tracking import MlflowClient

from facilflow_assets.evaluation.decision import DECISION_THRESHOLD_TAG
from facilflow_assets.features.service_versions import FEATURE_SERVICE_TAG
from facilflow_assets.governance.audit import AuditTrail, audit_experiment_of
from facilflow_assets.governance.digest import DIGEST_TAG, directory_digest
from facilflow_assets.governance.integrity import GovernanceViolation, unconfirmed_holder
from facilflow_assets.governance.stages import Stage
from facilflow_assets.training.boosting import dense_predictions, model_categories
from facilflow_assets.training.dataset import feature_matrix
from facilflow_assets.use_case import UseCase

PRODUCTION = "Production"
STAGE_ALIASES = {Stage.PRODUCTION.value: "production", Stage.STAGING.value: "staging"}


class ModelLoadError(RuntimeError):
    """The named model version does not exist or cannot be loaded; the message says which."""


class ModelTampered(ModelLoadError, GovernanceViolation):
    """The version's files are not the ones its evaluation scored and its approval names."""


@dataclass(frozen=True)
class ModelRef:
    """A registered model version, resolved to its number."""

    name: str
    version: str
    digest: str = ""  # of its files, as recorded when it was evaluated
    feature_service: str = ""  # the Feast feature service it was trained on
    # Binary: the probability from which its answer is positive, as its evaluation chose.
    decision_threshold: float | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def decided_at(ref: ModelRef, use_case: UseCase, override: float | None = None) -> float | None:
    """The probability from which `ref`'s answer is positive (None for a regression)."""
    return use_case.threshold_of(ref.decision_threshold, override)


def resolve(client: MlflowClient, name: str, version_or_stage: str) -> ModelRef:
    """`version_or_stage` is a version number, or Production or Staging (by their alias)."""
    try:
        if version_or_stage in STAGE_ALIASES:
            found = client.get_model_version_by_alias(name, STAGE_ALIASES[version_or_stage])
        elif version_or_stage.isdigit():
            found = client.get_model_version(name, version_or_stage)
        else:
            raise ModelLoadError(
                f"model version {version_or_stage!r}: use a version number or one of "
                f"{', '.join(STAGE_ALIASES)}"
            )
    except MlflowException as error:
        problem = f"{name} has no {version_or_stage} version ({error.message})"
        raise ModelLoadError(problem) from None
    tags = found.tags
    threshold = tags.get(DECISION_THRESHOLD_TAG)
    return ModelRef(
        name,
        str(found.version),
        tags.get(DIGEST_TAG, ""),
        tags.get(FEATURE_SERVICE_TAG, ""),
        float(threshold) if threshold else None,
    )


def confirmed(client: MlflowClient, name: str, stage: str) -> ModelRef:
    """The version holding `stage` (Production or Staging), once the audit trail confirms
    it moved there with the files it has; else GovernanceViolation, naming the mismatch."""
    ref = resolve(client, name, stage)
    records = AuditTrail(client, audit_experiment_of(name)).history(name)
    problem = unconfirmed_holder(records, Stage(stage), ref.version, ref.digest)
    if problem:
        raise GovernanceViolation(f"{name}: {problem}")
    return ref


@dataclass(frozen=True)
class LoadedModel:
    ref: ModelRef
    booster: lightgbm.Booster
    input_names: list[str]

    @cached_property
    def categories(self) -> dict[str, list[str]]:
        """The categories of its text inputs."""
        return model_categories(self.booster)

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Predictions for rows ordered as `input_names` (a text input as its code)."""
        return dense_predictions(self.booster, rows)

    def input_frame(self, values: Mapping[str, Sequence]) -> pl.DataFrame:
        """`values` of each input (an online-store answer) as a frame, typed: a category as
        text, any other value as a number, a missing one as null."""
        return pl.DataFrame(
            {name: values[name] for name in self.input_names},
            schema={
                name: pl.String if name in self.categories else pl.Float64
                for name in self.input_names
            },
        )

    def predict_frame(self, frame: pl.DataFrame) -> np.ndarray:
        """Predictions for a frame holding a column per input, of that input's name."""
        return self.predict(feature_matrix(frame, self.input_names, self.categories))


def download(client: MlflowClient, ref: ModelRef, destination: Path) -> Path:
    """The version's model directory, copied to `destination`."""
    source = client.get_model_version_download_uri(ref.name, ref.version)
    try:
        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=str(destination), tracking_uri=client.tracking_uri
            )
        )
    except (MlflowException, OSError) as error:
        problem = f"{ref.uri}: cannot download the model from {source}: {error}"
        raise ModelLoadError(problem) from None


def load_directory(ref: ModelRef, directory: Path) -> LoadedModel:
    """A LightGBM model directory as MLflow logged it, with its input names from the signature."""
    try:
        model = Model.load(str(directory / "MLmodel"))
        if "lightgbm" not in model.flavors:
            raise ModelLoadError(f"{ref.uri}: not a LightGBM model ({', '.join(model.flavors)})")
        booster = lightgbm.Booster(model_file=str(directory / model.flavors["lightgbm"]["data"]))
    except (OSError, lightgbm.basic.LightGBMError, MlflowException) as error:
        raise ModelLoadError(f"{ref.uri}: the model does not load: {error}") from None
    signature = model.signature
    if signature is None:
        raise ModelLoadError(f"{ref.uri}: the model has no signature naming its inputs")
    return LoadedModel(ref, booster, signature.inputs.input_names())


def load(client: MlflowClient, ref: ModelRef) -> LoadedModel:
    """The version's model, once its files are the ones recorded at its evaluation."""
    if not ref.digest:
        raise ModelLoadError(
            f"{ref.uri} has no recorded digest of its files; only versions FacilFlow "
            "evaluated are loaded"
        )
    with tempfile.TemporaryDirectory() as scratch:
        directory = download(client, ref, Path(scratch))
        found = directory_digest(directory)
        if found != ref.digest:
            raise ModelTampered(
                f"{ref.uri}: its files are {found}, not the {ref.digest} that were evaluated "
                "and approved; it is not loaded"
            )
        return load_directory(ref, directory)
