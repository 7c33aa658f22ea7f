"""The code locations load from the tenants and use-case files, with the asset graph the
design card describes: one shared warehouse feeding every use case's prefixed lifecycle."""

import ast
import json
import os
import subprocess
import sys

import dagster as dg
import pytest
import yaml

from facilflow_assets import locations as locations_module
from facilflow_assets.definitions import defs, tenant_definitions
from facilflow_assets.environment import PROJECT_ROOT, Environment
from facilflow_assets.resource_map import build_resources
from facilflow_assets.tenants import TenantSpec, load_tenants
from facilflow_assets.use_case import USE_CASES_DIR, UseCaseError

RAW_TABLES = {"flights", "weather", "planes", "airports", "airlines"}
STAGES = ["features", "training", "evaluation", "registry", "deployment", "monitoring"]
LIFECYCLE = {
    "features/feast_registry",
    "features/online_store",
    "features/training_set",
    "training/trained_model",
    "evaluation/evaluation_report",
    "registry/registered_model_version",
    "deployment/prediction_endpoint",
    "deployment/batch_predictions",
    "monitoring/feature_drift",
    "monitoring/prediction_drift",
    "monitoring/serving_health",
}
DEMO_USE_CASES = load_tenants()["demo"].use_cases


def _keys(definitions: dg.Definitions) -> list[str]:
    graph = definitions.resolve_asset_graph()
    return [key.to_user_string() for key in graph.get_all_asset_keys()]


def test_one_location_holds_the_shared_warehouse_and_every_use_case_of_the_tenant():
    keys = _keys(defs)
    assert len(keys) == len(set(keys))
    assert {f"raw/{t}" for t in RAW_TABLES} <= set(keys)
    assert {f"staging/stg_{t}" for t in RAW_TABLES} <= set(keys)
    assert {"marts/fct_flight_departure_weather", "marts/flight_outcomes"} <= set(keys)
    for use_case in DEMO_USE_CASES:
        assert {f"demo/{use_case}/{name}" for name in LIFECYCLE} <= set(keys), use_case
    assert "demo/flight_delay/features/weather_hourly" in keys
    assert "demo/airport_rain/features/airport_weather" in keys


def test_every_use_case_asset_is_prefixed_and_grouped_by_its_stage():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        assert key.to_user_string() == key.to_user_string().lower()
        group = graph.get(key).group_name
        if key.path[0] == "demo":
            assert key.path[1] in DEMO_USE_CASES and group == key.path[2] in STAGES, key
        else:
            assert group == {"raw": "raw", "staging": "dbt", "marts": "dbt"}[key.path[0]], key


def test_one_warehouse_feeds_every_use_case():
    graph = defs.resolve_asset_graph()
    outcomes = graph.get(dg.AssetKey(["marts", "flight_outcomes"]))
    readers = {key.path[1] for key in outcomes.child_keys if key.path[0] == "demo"}
    assert {"flight_delay", "arrival_delay"} <= readers
    staged = graph.get(dg.AssetKey(["staging", "stg_flights"]))
    assert {k.to_user_string() for k in staged.parent_keys} == {"raw/flights"}


def test_jobs_sensors_and_schedules_are_named_per_use_case_and_select_only_its_assets():
    repository = defs.get_repository_def()
    for use_case in DEMO_USE_CASES:
        for job in (
            "features_job",
            "training_job",
            "candidate_job",
            "deployment_job",
            "monitoring_job",
            "serving_health_job",
        ):
            resolved = repository.get_job(f"{use_case}_{job}")
            selected = resolved.asset_layer.selected_asset_keys
            assert selected and all(k.path[:2] == ["demo", use_case] for k in selected), job
            assert resolved.tags["facilflow/tenant"] == "demo"
            assert resolved.tags["facilflow/use_case"] == use_case
        promotion = repository.get_job(f"{use_case}_promotion_job")
        assert promotion.tags["facilflow/use_case"] == use_case
        for sensor in (
            "approval_sensor",
            "promote_tag_sensor",
            "redeploy_sensor",
            "drift_retraining_sensor",
        ):
            assert repository.get_sensor_def(f"{use_case}_{sensor}").job_name.startswith(
                f"{use_case}_"
            )
        assert repository.get_schedule_def(f"{use_case}_daily_monitoring")
    assert repository.get_job("warehouse_job")
    assert repository.get_sensor_def("event_relay_sensor")


def test_dbt_tests_become_asset_checks():
    checks = defs.get_repository_def().asset_graph.asset_check_keys
    by_asset = {check.asset_key.to_user_string() for check in checks}
    assert {"staging/stg_flights", "marts/fct_flight_departure_weather"} <= by_asset
    assert "demo/flight_delay/evaluation/evaluation_report" in by_asset
    assert len(checks) >= 40


def test_a_broken_use_case_file_is_reported_and_the_others_still_load(tmp_path, monkeypatch):
    broken = tmp_path / "use_cases"
    broken.mkdir()
    for path in USE_CASES_DIR.glob("*.yaml"):
        (broken / path.name).write_text(path.read_text())
    document = yaml.safe_load((broken / "airport_rain.yaml").read_text())
    document["target"]["keys"] = []
    (broken / "airport_rain.yaml").write_text(yaml.safe_dump(document))
    monkeypatch.setattr("facilflow_assets.use_case.USE_CASES_DIR", broken)
    spec = TenantSpec(description="test", use_cases=["flight_delay", "airport_rain"])
    resources = build_resources(Environment.LOCAL, home=tmp_path / "home")
    location = tenant_definitions("demo", resources, spec)
    keys = set(_keys(location))
    assert "demo/flight_delay/training/trained_model" in keys
    assert not any(k.startswith("demo/airport_rain/training") for k in keys)
    placeholder = location.resolve_assets_def(
        dg.AssetKey(["demo", "airport_rain", "use_case_file", "airport_rain"])
    )
    description = placeholder.specs_by_key[placeholder.key].description
    assert "airport_rain.yaml" in description and "keys" in description
    with pytest.raises(UseCaseError, match=r"airport_rain\.yaml: field 'target.keys'"):
        dg.materialize([placeholder])


def test_no_module_reads_the_use_case_at_import_time():
    """A use case reaches code as an argument: nothing names one at module level."""
    for folder in ("facilflow_assets", "jobs", "sensors", "resources"):
        for path in (PROJECT_ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in tree.body:
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    continue
                for call in ast.walk(node):
                    if isinstance(call, ast.Call):
                        name = getattr(call.func, "id", getattr(call.func, "attr", ""))
                        assert name not in {"load_use_case", "use_case_path"}, path


def test_each_tenant_and_the_shared_warehouse_are_locations_of_the_workspace():
    workspace = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())
    locations = {
        entry["python_module"]["location_name"]: entry["python_module"]["attribute"]
        for entry in workspace["load_from"]
    }
    assert locations == {"shared": "shared", **{t: t for t in load_tenants()}}
    modules = {entry["python_module"]["module_name"] for entry in workspace["load_from"]}
    assert modules == {"facilflow_assets.locations"}
    for tenant in load_tenants():
        assert isinstance(getattr(locations_module, tenant), dg.Definitions)
    with pytest.raises(AttributeError, match="neither 'shared' nor a tenant of .*tenants.yaml"):
        locations_module.globex  # noqa: B018 - the lookup is what is tested


@pytest.mark.slow  # each location in a code server process of its own
def test_the_workspace_loads_its_locations_on_one_instance_without_key_collisions(tmp_path):
    """Through Dagster's own workspace loading, each location in a process of its own."""
    script = """
import json, sys
import dagster as dg
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
with dg.DagsterInstance.get() as instance, WorkspaceProcessContext(
    instance, WorkspaceFileTarget(paths=["workspace.yaml"])
) as process:
    workspace = process.create_request_context()
    report = {}
    for name, entry in workspace.get_code_location_entries().items():
        if entry.load_error:
            report[name] = {"error": str(entry.load_error)}
            continue
        [repository] = entry.code_location.get_repositories().values()
        report[name] = {
            "assets": [n.asset_key.to_user_string() for n in repository.get_asset_node_snaps()
                       if not n.is_source],
            "sensors": [s.name for s in repository.get_sensors()],
        }
    print("REPORT " + json.dumps(report))
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path), "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [line] = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    report = json.loads(line.removeprefix("REPORT "))
    assert set(report) == {"shared", *load_tenants()}
    assert not [name for name, entry in report.items() if "error" in entry], report
    owners: dict[str, str] = {}
    for name, entry in report.items():
        for key in entry["assets"]:
            assert key not in owners, f"{key} is defined by {owners[key]} and {name}"
            owners[key] = name
    assert all(k.split("/")[0] in ("raw", "staging", "marts") for k in report["shared"]["assets"])
    for tenant, spec in load_tenants().items():
        assert {k.split("/")[0] for k in report[tenant]["assets"]} == {tenant}
        assert {k.split("/")[1] for k in report[tenant]["assets"]} == set(spec.use_cases)
        assert f"{spec.use_cases[0]}_approval_sensor" in report[tenant]["sensors"]
