"""Every benchmark still imports: an API it calls that moved or vanished fails here, not the
next time someone measures. Those that need no built working directory also run, at a
smoke size (tests/test_benchmarks_on_demo.py runs the others)."""

from pathlib import Path

import pytest

from tests.benchmark_runs import BENCHMARKS_DIR, load_benchmark, run_benchmark

BENCHMARKS = sorted(BENCHMARKS_DIR.glob("*.py"))


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda path: path.stem)
def test_the_benchmark_imports_and_has_a_main(path: Path):
    assert callable(load_benchmark(path).main)


def test_the_sensor_tick_benchmark_runs_on_a_small_registry(monkeypatch, capsys):
    arguments = ["--versions", "12", "--pending", "3"]
    figures = run_benchmark("sensor_tick", arguments, monkeypatch, capsys)
    assert (figures["versions"], figures["pending_requests"]) == (12, 3)
    assert figures["tick_s"] > 0


def test_the_drift_benchmark_runs_on_small_frames(monkeypatch, capsys):
    arguments = ["--rows", "20000", "--reference-rows", "6000"]
    figures = run_benchmark("drift", arguments, monkeypatch, capsys)
    assert (figures["rows"], figures["reference_rows"], figures["columns"]) == (20_000, 6_000, 20)
    assert figures["facilflow_s"] > 0 and figures["evidently_full_s"] > 0
    assert figures["same_verdicts"]
    assert figures["drifted_columns"] == [
        "continuous_0",
        "continuous_1",
        "continuous_2",
        "continuous_3",
        "discrete_0",
        "with_nulls_0",
    ]


def test_the_feature_engine_benchmark_runs_on_a_small_event_log(monkeypatch, capsys):
    arguments = ["--rows", "20000", "--entities", "100", "--repeats", "1"]
    figures = run_benchmark("features", arguments, monkeypatch, capsys)
    assert (figures["rows"], figures["entities"]) == (20_000, 100)
    assert figures["polars_s"] > 0 and figures["pandas_s"] > 0
    # Equal, or every differing value is one the engine has right by an exact recomputation.
    assert figures["values_match"] or (
        0 < figures["differing_values"] == figures["differing_values_polars_exact"]
    )


@pytest.mark.slow  # seven fresh processes, most importing MLflow
def test_the_cli_benchmark_times_each_command_once(monkeypatch, capsys):
    figures = run_benchmark("cli", ["--repeats", "1", "--warm-up", "0"], monkeypatch, capsys)
    assert figures["repeats"] == 1
    commands = ("models_list", "models_history", "runs_compare", "mlflow_runs_list")
    assert all(figures[f"{command}_s"] > 0 for command in commands)
