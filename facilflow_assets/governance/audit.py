"""The audit trail: one MLflow run per request, decision and transition of a model.

Records live in the experiment `/<tenant>/<use_case>/audit`, so the MLflow UI lists them
next to the use case's runs; a record is written once and never updated.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

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
)


STAGE_CHANGES = ("transition", "rollback", "archive")  # the actions that moved a version


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

    @property
    def changed_stage(self) -> bool:
        return self.action in STAGE_CHANGES


class AuditTrail:
    def __init__(self, client: MlflowClient, experiment_name: str):
        self.client = client
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None:
            try:
                client.create_experiment(
                    experiment_name,
                    tags={"mlflow.note.content": "Audit trail of the use case's registered model."},
                )
            except MlflowException:  # created by another process meanwhile
                pass
            experiment = client.get_experiment_by_name(experiment_name)
        self.experiment_id = experiment.experiment_id

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
        run = self.client.create_run(
            self.experiment_id, run_name=f"{action} {model} v{version}", tags=tags
        )
        self.client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FINISHED))

    def history(self, model: str) -> list[AuditRecord]:
        """Every record of `model`, oldest first."""
        runs = self.client.search_runs(
            [self.experiment_id],
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
