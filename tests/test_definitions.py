"""The code location loads, with the asset graph the design card describes."""

import os
import subprocess
import sys

import dagster as dg

from facilflow_assets.definitions import defs
from facilflow_assets.environment import PROJECT_ROOT

RAW_TABLES = {"flights", "weather", "planes", "airports", "airlines"}


def test_definitions_load_with_every_stage_asset_and_unique_keys():
    graph = defs.get_repository_def().asset_graph
    keys = [key.to_user_string() for key in graph.get_all_asset_keys()]
    assert len(keys) == len(set(keys))
    assert {f"raw/{t}" for t in RAW_TABLES} <= set(keys)
    assert {f"staging/stg_{t}" for t in RAW_TABLES} <= set(keys)
    assert {
        "marts/fct_flight_departure_weather",
        "marts/flight_schedule",
        "marts/flight_outcomes",
    } <= set(keys)
    assert {
        "features/weather_hourly",
        "features/feast_registry",
        "features/online_store",
        "features/training_set",
    } <= set(keys)
    assert {
        "training/trained_model",
        "evaluation/evaluation_report",
        "registry/registered_model_version",
        "deployment/prediction_endpoint",
        "deployment/batch_predictions",
        "monitoring/feature_drift",
        "monitoring/prediction_drift",
        "monitoring/serving_health",
    } <= set(keys)
    assert len(keys) == 30


def test_asset_keys_are_lowercase_and_grouped_by_stage():
    graph = defs.get_repository_def().asset_graph
    for key in graph.get_all_asset_keys():
        assert key.to_user_string() == key.to_user_string().lower()
        group = graph.get(key).group_name
        expected = {
            "raw": "raw",
            "staging": "dbt",
            "marts": "dbt",
            "features": "features",
            "training": "training",
            "evaluation": "evaluation",
            "registry": "registry",
            "deployment": "deployment",
            "monitoring": "monitoring",
        }
        assert group == expected[key.path[0]], key


def test_dbt_sources_are_the_raw_assets():
    graph = defs.get_repository_def().asset_graph
    staged = graph.get(dg.AssetKey(["staging", "stg_flights"]))
    assert {k.to_user_string() for k in staged.parent_keys} == {"raw/flights"}


def test_dbt_tests_become_asset_checks():
    checks = defs.get_repository_def().asset_graph.asset_check_keys
    by_asset = {check.asset_key.to_user_string() for check in checks}
    assert {"staging/stg_flights", "marts/fct_flight_departure_weather"} <= by_asset
    assert len(checks) >= 40


def test_workspace_loads_without_errors_through_the_dagster_cli(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr
