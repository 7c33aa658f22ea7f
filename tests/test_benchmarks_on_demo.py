"""The benchmarks over the working directory `make demo` builds run at a smoke size on the
suite's shared build, each measuring both of its sides: what they call of FacilFlow and of
its peers still fits together."""

import os
import shutil

from tests.benchmark_runs import run_benchmark
from tests.lifecycle import lifecycle


def test_the_batch_scoring_benchmark_scores_a_few_flights(built_home, monkeypatch, capsys):
    arguments = ["--home", str(built_home.home), "--rows", "2000", "--repeats", "1"]
    figures = run_benchmark("batch_scoring", arguments, monkeypatch, capsys)
    assert (figures["rows"], figures["scale"]) == (2000, 1)
    assert figures["model"].startswith("models:/demo.flight_delay/")
    assert figures["facilflow_s"] > 0 and figures["raw_predict_s"] > 0
    # float32 inputs against the pandas frame's float64: close, not equal.
    assert figures["max_abs_difference"] < 0.05


def test_the_training_set_join_benchmark_joins_a_few_flights(built_home, monkeypatch, capsys):
    arguments = ["--home", str(built_home.home), "--rows", "2000"]
    figures = run_benchmark("pit_join", arguments, monkeypatch, capsys)
    assert figures["rows"] == 2000 and figures["features"] > 0
    assert figures["facilflow_s"] > 0 and figures["feast_duckdb_s"] > 0 and figures["oracle_s"] > 0
    assert figures["rows_identical"]


def test_the_training_benchmark_fits_a_few_rounds(built_home, monkeypatch, capsys):
    """Ray Train's start-up sets the pace: about 25 s on two cores."""
    arguments = ["--home", str(built_home.home), "--rounds", "5", "--repeats", "1"]
    figures = run_benchmark("training", [*arguments, "--ray-repeats", "1"], monkeypatch, capsys)
    assert figures["rounds"] == 5 and figures["rows"] > 0
    assert figures["plain_s"] > 0 and figures["tracked_s"] > 0 and figures["ray_s"] > 0
    assert figures["ray_workers"] == os.cpu_count()
    assert figures["valid_auc_plain"] > 0.5 and figures["valid_auc_ray"] > 0.5


def test_the_serving_benchmark_measures_both_servers_briefly(
    built_home, tmp_path, monkeypatch, capsys
):
    """The endpoint's deployment records into the working directory: a copy of it."""
    home = shutil.copytree(built_home.home, tmp_path / "facilflow")
    arguments = ["--home", str(home), "--warm-up", "5", "--requests", "20", "--seconds", "1"]
    figures = run_benchmark("serving", arguments, monkeypatch, capsys)
    assert (figures["requests_c1"], figures["seconds_c8"]) == (20, 1.0)
    for server in ("facilflow", "mlflow_serve"):
        for concurrency in ("c1", "c8"):
            assert figures[server][concurrency]["p50_ms"] > 0, (server, concurrency)
            assert figures[server][concurrency]["rps"] > 0, (server, concurrency)


def test_the_serving_faults_benchmark_kills_and_rolls_out_briefly(built_home, monkeypatch, capsys):
    arguments = ["--home", str(built_home.home), "--seconds", "4"]
    figures = run_benchmark("serving_faults", arguments, monkeypatch, capsys)
    assert figures["requests"] > 0 and figures["p50_ms"] > 0
    assert figures["non_2xx_during_rollout"] == 0
    # A new replica's start (process, model download, online store) on a busy 2-core
    # machine; the full run's figure is docs/performance.md's, this bounds a hang.
    assert figures["recovery_s"] is not None and figures["recovery_s"] < 60


def test_a_year_of_daily_quality_matches_by_hand_and_the_estimate_tracks_it(
    built_home, monkeypatch, capsys
):
    """Every flight of 2013 scored by the Production version. The estimate, made from
    calibrated scores without one outcome, follows the realized AUC across the year's
    days, most closely on the days the version never trained on."""
    arguments = ["--home", str(built_home.home), "--repeats", "1"]
    figures = run_benchmark("quality_year", arguments, monkeypatch, capsys)
    assert (figures["days"], figures["rows_scored"]) == (365, 336_776)
    assert figures["max_abs_difference"] < 1e-9
    assert figures["facilflow_s"] > 0 and figures["pandas_sklearn_s"] > 0
    unseen, every_day = (
        figures["estimate_vs_realized_auc_unseen_days"],
        figures["estimate_vs_realized_auc"],
    )
    assert unseen["days"] > 100 and unseen["correlation"] > 0.5 and unseen["mae"] < 0.05
    assert every_day["correlation"] > 0.5 and every_day["mae"] < 0.08


def test_the_scale_benchmark_runs_every_stage_in_both_modes(
    built_home, tmp_path, monkeypatch, capsys
):
    """A two-fold year of 2,000 flights: the cluster's fixed start-up sets the pace."""
    arguments = ["--home", str(built_home.home), "--rows", "2000", "--factors", "2"]
    figures = run_benchmark("scale", [*arguments, "--workdir", str(tmp_path)], monkeypatch, capsys)
    scaled = figures["2x"]
    assert scaled["flights"] == 4000 and scaled["equal"] is True
    # Every feature table, the training set and the scores.
    assert scaled["outputs_compared"] == len(lifecycle().use_case.tables) + 2
    for mode, nodes in (("local", 0), ("cluster", 2)):
        stages = scaled[mode]
        assert stages["features"]["rows"] > 4000, stages
        assert stages["join"]["rows"] == stages["scoring"]["rows"] > 3000
        assert stages["join"]["ray_nodes"] == stages["scoring"]["ray_nodes"] == nodes
        assert all(stages[s]["peak_gb"] > 0.1 for s in ("features", "join", "scoring"))
    assert scaled["cluster"]["cluster_idle_gb"] > 0.1
