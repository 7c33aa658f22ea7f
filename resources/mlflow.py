"""MLflow tracking: each use case's experiment, its runs and the model registry."""

import contextlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlparse

import mlflow
import requests
from dagster import ConfigurableResource, InitResourceContext
from mlflow.entities import Experiment, Run, RunStatus
from mlflow.environment_variables import (
    MLFLOW_TRACKING_INSECURE_TLS,
    MLFLOW_TRACKING_SERVER_CERT_PATH,
)
from mlflow.tracking import MlflowClient
from pydantic import Field, PrivateAttr

from facilflow_assets.scope import TENANT_TAG, USE_CASE_TAG, ModelScope

REACHABILITY_TIMEOUT_S = 5.0
PROXIED_ARTIFACTS = "mlflow-artifacts:"
SQLITE_PREFIX = "sqlite:///"
DAGSTER_RUN_TAG = "dagster_run_id"  # the tag dagster-mlflow gives a Dagster run's MLflow runs


# The MLflow UI opens an experiment on the view its kind names.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_DEVELOPMENT = "custom_model_development"
NOTE_TAG = "mlflow.note.content"  # a run's or experiment's description in the UI


class TrackingUnavailableError(RuntimeError):
    """The MLflow tracking server does not answer."""


class MlflowResource(ConfigurableResource):
    """Where runs and models of every use case are tracked, each in its scope's experiment.

    Locally a sqlite store and an artifact folder under `.facilflow/mlflow/`; in production
    an `mlflow server` (MLFLOW_TRACKING_URI) that keeps the artifacts itself
    (FACILFLOW_ARTIFACT_ROOT `mlflow-artifacts:/`), so its permissions apply to them.
    """

    tracking_uri: str = Field(description="sqlite:///... locally, http(s)://... for a server.")
    artifact_root: str = Field(
        description="Folder (file URI) or s3:// prefix under which experiments keep artifacts, "
        "or `mlflow-artifacts:/` for the server's own store."
    )
    ui_url: str | None = Field(
        default=None,
        description="Base URL of the MLflow UI for links; the tracking URI when it is a server.",
    )
    _dagster_run_id: str | None = PrivateAttr(default=None)
    _scope: ModelScope | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        run = context.run
        self._dagster_run_id = run.run_id if run else None
        tags = run.tags if run else {}
        if TENANT_TAG in tags and USE_CASE_TAG in tags:
            self._scope = ModelScope(tags[TENANT_TAG], tags[USE_CASE_TAG])

    @property
    def dagster_run_id(self) -> str | None:
        """The Dagster run this resource serves; its MLflow runs carry it as a tag."""
        return self._dagster_run_id

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
            requests.get(
                health, timeout=REACHABILITY_TIMEOUT_S, verify=_server_certificates()
            ).raise_for_status()
        except requests.RequestException as exc:
            raise TrackingUnavailableError(
                f"the MLflow tracking server at {self.tracking_uri} does not answer ({exc})"
            ) from None

    def experiment_artifact_location(self, scope: ModelScope) -> str | None:
        """`<root>/<tenant>/<use_case>`; none for the server's own store, which keeps each
        experiment's artifacts under its id, where MLflow checks permissions per experiment."""
        if self.artifact_root.startswith(PROXIED_ARTIFACTS):
            return None
        return f"{self.artifact_root.rstrip('/')}/{scope.tenant}/{scope.use_case}"

    def ensure_experiment(self, scope: ModelScope) -> Experiment:
        """The use case's experiment, created with a description on first use. It is marked
        as model development, so the MLflow UI opens it on its runs, not its GenAI view."""
        client = self.client()
        name = scope.experiment_name
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            if experiment.tags.get(EXPERIMENT_KIND_TAG) != MODEL_DEVELOPMENT:
                client.set_experiment_tag(
                    experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT
                )
            return experiment
        experiment_id = client.create_experiment(
            name,
            artifact_location=self.experiment_artifact_location(scope),
            tags={
                EXPERIMENT_KIND_TAG: MODEL_DEVELOPMENT,
                NOTE_TAG: (
                    f"Models of the '{scope.use_case}' use case of tenant "
                    f"'{scope.tenant}', trained and tracked by FacilFlow."
                ),
                **{f"facilflow.{k}": v for k, v in scope.event_fields().items()},
            },
        )
        return client.get_experiment(experiment_id)

    @contextlib.contextmanager
    def tracked_run(
        self,
        scope: ModelScope,
        run_name: str,
        tags: dict[str, str],
        resume_run_id: str | None = None,
    ) -> Iterator[Run]:
        """A run of the use case's experiment, tagged with the Dagster run that made it.

        `resume_run_id` reopens an unfinished run instead of starting one. The run ends
        FINISHED, or FAILED if the block raises. MLflow's fluent API (`mlflow.log_*`,
        flavors' `log_model`) writes to it inside the block.
        """
        client = self.client()
        experiment = self.ensure_experiment(scope)
        tags = {**tags, **({DAGSTER_RUN_TAG: self._dagster_run_id} if self._dagster_run_id else {})}
        if resume_run_id:
            client.update_run(resume_run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            run = client.get_run(resume_run_id)
        else:
            run = client.create_run(experiment.experiment_id, run_name=run_name, tags=tags)
        run_id = run.info.run_id
        with self.fluent(), mlflow.start_run(run_id=run_id) as active:
            mlflow.set_tags(tags)
            yield active

    @contextlib.contextmanager
    def fluent(self) -> Iterator[None]:
        """Point MLflow's module-level API at this store for the duration of the block."""
        previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
        self.client()  # checks the server answers, creates the local store's folder
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(previous[0])
            mlflow.set_registry_uri(previous[1])

    def end_run(self, status: str = "FINISHED") -> None:
        """End every run this Dagster run left open (dagster-mlflow's hook calls this)."""
        if not self._dagster_run_id:
            return
        client = self.client()
        for run in client.search_runs(
            self._experiments_of_the_run(client),
            filter_string=f"tags.{DAGSTER_RUN_TAG} = '{self._dagster_run_id}' "
            "and attributes.status = 'RUNNING'",
        ):
            client.set_terminated(run.info.run_id, status=status)

    def _experiments_of_the_run(self, client: MlflowClient) -> list[str]:
        """The experiment of the run's use case (its facilflow/tenant and use_case tags), or
        every experiment, page by page, for a run without them."""
        if self._scope is not None:
            experiment = client.get_experiment_by_name(self._scope.experiment_name)
            return [experiment.experiment_id] if experiment else []
        found, page = [], None
        while True:
            batch = client.search_experiments(max_results=1000, page_token=page)
            found += [e.experiment_id for e in batch]
            page = batch.token
            if not page:
                return found

    @property
    def _ui_base(self) -> str | None:
        if self.ui_url:
            return self.ui_url.rstrip("/")
        if urlparse(self.tracking_uri).scheme in ("http", "https"):
            return self.tracking_uri.rstrip("/")
        return None

    def run_url(self, experiment_id: str, run_id: str) -> str | None:
        """The run's page in the MLflow UI, when a UI is known."""
        base = self._ui_base
        return f"{base}/#/experiments/{experiment_id}/runs/{run_id}" if base else None

    def model_version_url(self, name: str, version: str) -> str | None:
        base = self._ui_base
        return f"{base}/#/models/{quote(name)}/versions/{version}" if base else None


def _server_certificates() -> str | bool:
    """How to verify an https server, as MLflow's client does: the CA bundle at
    MLFLOW_TRACKING_SERVER_CERT_PATH, no check with MLFLOW_TRACKING_INSECURE_TLS, else the
    system's."""
    if MLFLOW_TRACKING_INSECURE_TLS.get():
        return False
    return MLFLOW_TRACKING_SERVER_CERT_PATH.get() or True
