"""MLflow tracking for a tenant's use case: the experiment, runs and the model registry."""

from pathlib import Path
from urllib.parse import urlparse

import requests
from dagster import ConfigurableResource
from mlflow.entities import Experiment
from mlflow.tracking import MlflowClient
from pydantic import Field

from resources.tenancy import TenantResource

REACHABILITY_TIMEOUT_S = 5.0
SQLITE_PREFIX = "sqlite:///"


class TrackingUnavailableError(RuntimeError):
    """The MLflow tracking server does not answer."""


class MlflowResource(ConfigurableResource):
    """Where runs and models of the tenant's use case are tracked.

    Locally a sqlite store and an artifact folder under `.facilflow/mlflow/`; in production
    an `mlflow server` (MLFLOW_TRACKING_URI) with artifacts in an S3-compatible bucket
    (FACILFLOW_ARTIFACT_ROOT, endpoint in MLFLOW_S3_ENDPOINT_URL).
    """

    tracking_uri: str = Field(description="sqlite:///... locally, http(s)://... for a server.")
    artifact_root: str = Field(
        description="Folder (file URI) or s3:// prefix under which experiments keep artifacts."
    )
    tenant: TenantResource

    def client(self) -> MlflowClient:
        self.check_reachable()
        if self.tracking_uri.startswith(SQLITE_PREFIX):
            Path(self.tracking_uri.removeprefix(SQLITE_PREFIX)).parent.mkdir(
                parents=True, exist_ok=True
            )
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def check_reachable(self) -> None:
        """Fail fast with the URI named, rather than after MLflow's minutes of retries."""
        if urlparse(self.tracking_uri).scheme not in ("http", "https"):
            return
        health = self.tracking_uri.rstrip("/") + "/health"
        try:
            requests.get(health, timeout=REACHABILITY_TIMEOUT_S).raise_for_status()
        except requests.RequestException as exc:
            raise TrackingUnavailableError(
                f"the MLflow tracking server at {self.tracking_uri} does not answer ({exc})"
            ) from None

    @property
    def experiment_artifact_location(self) -> str:
        return f"{self.artifact_root.rstrip('/')}/{self.tenant.tenant}/{self.tenant.use_case}"

    def ensure_experiment(self) -> Experiment:
        """The use case's experiment, created with a description on first use."""
        client = self.client()
        name = self.tenant.experiment_name
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment
        experiment_id = client.create_experiment(
            name,
            artifact_location=self.experiment_artifact_location,
            tags={
                "mlflow.note.content": (
                    f"Models of the '{self.tenant.use_case}' use case of tenant "
                    f"'{self.tenant.tenant}', trained and tracked by FacilFlow."
                ),
                **{f"facilflow.{k}": v for k, v in self.tenant.event_fields().items()},
            },
        )
        return client.get_experiment(experiment_id)
