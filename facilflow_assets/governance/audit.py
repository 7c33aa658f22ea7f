"""The audit trail: one MLflow run per request, decision and transition of a model.

Records live in the experiment `/<tenant>/<use_case>/audit`, so the MLflow UI lists them
next to the use case's runs; a record is written once and never updated. On a server with
the governance app only the server side writes there: the app itself (requests and
decisions, as the authenticated user made them) and the service account (evaluations,
refusals, transitions); the app refuses every other write to the experiment and its runs.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlparse

from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

PREFIX = "facilflow.audit."
FIELDS = (
    "model",
    "version",
    "action",
    "from_stage",
    "to_stage",
    "actor",
    "comment",
    "reason",
    "dagster_run_id",
    "stamp",
    "digest",
)


STAGE_CHANGES = ("transition", "rollback", "archive")  # the actions that moved a version
AUDIT_SUFFIX = "/audit"
GOVERNANCE_ROUTE = "/api/2.0/facilflow/governance"  # answered by the governance server app


def server_records_decisions(client: MlflowClient) -> bool:
    """Whether the tracking server runs the governance app, which records requests and
    decisions itself; otherwise (a local store) the client that makes them records them."""
    uri = client.tracking_uri
    if urlparse(uri).scheme not in ("http", "https"):
        return False
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    response = http_request(get_default_host_creds(uri), GOVERNANCE_ROUTE, "GET", max_retries=0)
    return response is not None and response.status_code == 200


def audit_experiment_of(model: str) -> str:
    """The audit experiment of the registered model `<tenant>.<use_case>`."""
    tenant, _, use_case = model.partition(".")
    return f"/{tenant}/{use_case}{AUDIT_SUFFIX}"


def is_audit_experiment(name: str) -> bool:
    return name.rstrip("/").lower().endswith(AUDIT_SUFFIX)


@dataclass(frozen=True)
class AuditRecord:
    at: datetime
    model: str
    version: str
    action: str  # request, approval, rejection, refusal, transition, rollback, archive
    actor: str
    from_stage: str = ""
    to_stage: str = ""
    comment: str = ""
    reason: str = ""
    dagster_run_id: str = ""
    stamp: str = ""  # the time on the request or decision tags this record confirms
    digest: str = ""  # of the version's files, as they were reviewed or moved

    @property
    def changed_stage(self) -> bool:
        return self.action in STAGE_CHANGES


class AuditTrail:
    def __init__(self, client: MlflowClient, experiment_name: str):
        self.client = client
        self.experiment_name = experiment_name

    def _experiment_id(self, create: bool) -> str | None:
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is None and create:
            try:
                self.client.create_experiment(
                    self.experiment_name,
                    tags={"mlflow.note.content": "Audit trail of the use case's registered model."},
                )
            except MlflowException:  # created by another process meanwhile
                pass
            experiment = self.client.get_experiment_by_name(self.experiment_name)
        return experiment.experiment_id if experiment else None

    def record(self, model: str, version: str, action: str, actor: str, **fields: str) -> None:
        tags = {
            f"{PREFIX}{key}": str(value)
            for key, value in {
                "model": model,
                "version": version,
                "action": action,
                "actor": actor,
                **fields,
            }.items()
            if value
        }
        experiment_id = self._experiment_id(create=True)
        if experiment_id is None:
            raise RuntimeError(f"the audit experiment {self.experiment_name} could not be created")
        run = self.client.create_run(
            experiment_id, run_name=f"{action} {model} v{version}", tags=tags
        )
        self.client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FINISHED))

    def history(self, model: str) -> list[AuditRecord]:
        """Every record of `model`, oldest first."""
        experiment_id = self._experiment_id(create=False)
        if experiment_id is None:
            return []
        runs = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{PREFIX}model` = '{model}'",
            order_by=["attributes.start_time ASC"],
            max_results=50_000,
        )
        return [
            AuditRecord(
                at=datetime.fromtimestamp(run.info.start_time / 1000, UTC),
                **{key: run.data.tags.get(f"{PREFIX}{key}", "") for key in FIELDS},
            )
            for run in runs
        ]


def production_at(records: list[AuditRecord], moment: datetime) -> str | None:
    """The version that was in Production at `moment`, replaying the records until then."""
    current = None
    for record in records:
        if record.at > moment:
            break
        if not record.changed_stage:
            continue
        if record.to_stage == "Production":
            current = record.version
        elif record.from_stage == "Production" and record.version == current:
            current = None
    return current
