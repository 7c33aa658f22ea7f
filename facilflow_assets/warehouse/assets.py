"""The dbt project as Dagster assets: staging views and marts in DuckDB, dbt tests as checks."""

import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from facilflow_assets.environment import PROJECT_ROOT, get_environment
from resources import StorageResource

DBT_GROUP = "dbt"
# The dbt installed beside this interpreter, so a non-activated virtualenv works too.
DBT_EXECUTABLE = str(Path(sys.executable).parent / "dbt")

dbt_project = DbtProject(project_dir=PROJECT_ROOT / "dbt", target=get_environment().value)


def manifest_is_stale(project: DbtProject) -> bool:
    """True when the manifest is missing or older than a file of the dbt project."""
    if not project.manifest_path.exists():
        return True
    parsed_at = project.manifest_path.stat().st_mtime
    sources = [project.project_dir / "dbt_project.yml", project.project_dir / "profiles.yml"]
    for folder in ("models", "macros", "tests"):
        sources += (project.project_dir / folder).rglob("*")
    return any(path.stat().st_mtime > parsed_at for path in sources if path.is_file())


def ensure_manifest(project: DbtProject) -> None:
    """Parse the dbt project when its manifest is stale (or a fresh clone has none)."""
    if manifest_is_stale(project):
        parser = DbtCliResource(project_dir=project, dbt_executable=DBT_EXECUTABLE)
        parser.cli(["parse", "--quiet"], target_path=project.target_path).wait()


ensure_manifest(dbt_project)


class WarehouseTranslator(DagsterDbtTranslator):
    """Models keyed by their folder (`staging/stg_flights`, `marts/...`), all in group `dbt`."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return super().get_asset_key(dbt_resource_props)
        folder = dbt_resource_props["fqn"][1]
        return dg.AssetKey([folder, dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return DBT_GROUP


@dbt_assets(manifest=dbt_project.manifest_path, dagster_dbt_translator=WarehouseTranslator())
def warehouse_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, storage: StorageResource
):
    """Build the selected dbt models and run their tests against the working directory."""
    dbt_vars = json.dumps({"facilflow_home": str(storage.root)})
    events = list(dbt.cli(["build", "--vars", dbt_vars], context=context).stream())
    yield from with_row_counts(events, storage.warehouse_path)


def with_row_counts(events: list, warehouse_path: Path) -> Iterator:
    """Add `dagster/row_count` to each model's output, counted once dbt has released the file.

    dagster-dbt's own row counts keep a DuckDB connection open in this process, which would
    lock out the assets that read the warehouse later in the same run.
    """
    relations = json.loads(dbt_project.manifest_path.read_text())["nodes"]
    with duckdb.connect(str(warehouse_path), read_only=True) as connection:
        for event in events:
            unique_id = getattr(event, "metadata", {}).get("unique_id")
            if isinstance(event, dg.Output) and unique_id is not None:
                relation = relations[unique_id.value]["relation_name"]
                [(count,)] = connection.execute(f"select count(*) from {relation}").fetchall()
                event = event.with_metadata({**event.metadata, "dagster/row_count": count})
            yield event
