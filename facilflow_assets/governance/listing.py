"""The registry and its audit trail as tables, for the CLI and the Dagster UI."""

import polars as pl
from mlflow.tracking import MlflowClient

from facilflow_assets.governance.audit import AuditRecord
from facilflow_assets.governance.requests import REQUEST_BY, REQUEST_STATUS, RequestStatus
from facilflow_assets.governance.stages import STAGE_TAG, Stage


def versions_table(client: MlflowClient, name: str) -> pl.DataFrame:
    versions = sorted(
        client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version)
    )
    # Searches leave a version's aliases out; the registered model lists them all.
    aliases: dict[str, list[str]] = {}
    registered = client.get_registered_model(name).aliases.items() if versions else []
    for alias, number in registered:
        aliases.setdefault(str(number), []).append(alias)
    return pl.DataFrame(
        {
            "version": [str(v.version) for v in versions],
            "stage": [v.tags.get(STAGE_TAG, Stage.NONE.value) for v in versions],
            "aliases": [", ".join(sorted(aliases.get(str(v.version), []))) for v in versions],
            "pending_request_by": [
                v.tags.get(REQUEST_BY, "")
                if v.tags.get(REQUEST_STATUS) == RequestStatus.PENDING
                else ""
                for v in versions
            ],
            "source_run": [v.run_id or "" for v in versions],
        },
        schema={
            c: pl.String
            for c in ("version", "stage", "aliases", "pending_request_by", "source_run")
        },
    )


def history_table(records: list[AuditRecord]) -> pl.DataFrame:
    columns = ("at", "version", "action", "from_stage", "to_stage", "actor", "comment", "reason")
    return pl.DataFrame(
        {
            column: [
                r.at.isoformat(timespec="seconds") if column == "at" else getattr(r, column)
                for r in records
            ]
            for column in columns
        },
        schema={c: pl.String for c in columns},
    )
