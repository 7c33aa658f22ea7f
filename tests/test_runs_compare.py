"""`facilflow runs compare`: an experiment's top runs with parameters and metrics side by side."""

import time

import pytest
from click.testing import CliRunner
from mlflow.entities import Metric, Param

from facilflow_assets.cli import main
from facilflow_assets.environment import Environment
from facilflow_assets.resource_map import build_resources
from facilflow_assets.scope import ModelScope
from facilflow_assets.training.runs import NoSuchMetricError, compare_runs

SCOPE = ModelScope("demo", "flight_delay")  # the CLI's default tenant and its first use case

RUNS = [  # name, params, metrics
    ("lr-0.1", {"learning_rate": "0.1", "num_leaves": "31"}, {"valid_auc": 0.71, "loss": 0.52}),
    ("lr-0.05", {"learning_rate": "0.05", "num_leaves": "63"}, {"valid_auc": 0.74, "loss": 0.5}),
    ("lr-0.01", {"learning_rate": "0.01"}, {"valid_auc": 0.69}),
    ("failed", {"learning_rate": "0.5"}, {}),
]


@pytest.fixture
def tracked(tmp_path):
    mlflow = build_resources(Environment.LOCAL, home=tmp_path)["mlflow"]
    experiment = mlflow.ensure_experiment(SCOPE)
    client = mlflow.client()
    for name, params, metrics in RUNS:
        run = client.create_run(experiment.experiment_id, run_name=name)
        now = int(time.time() * 1000)
        client.log_batch(
            run.info.run_id,
            params=[Param(k, v) for k, v in params.items()],
            metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
        )
        client.set_terminated(run.info.run_id, status="FINISHED" if metrics else "FAILED")
    return tmp_path, client, experiment.experiment_id


def test_runs_are_ranked_by_the_metric_with_every_param_and_metric(tracked):
    _, client, experiment_id = tracked
    table = compare_runs(client, experiment_id, metric="valid_auc", top=10)
    assert table["run_name"].to_list() == ["lr-0.05", "lr-0.1", "lr-0.01"]
    assert table.columns[2:] == [
        "metric.valid_auc",
        "metric.loss",
        "status",
        "duration_s",
        "param.learning_rate",
        "param.num_leaves",
    ]
    assert table["param.num_leaves"].to_list() == ["63", "31", None]
    assert table["metric.valid_auc"].to_list() == [0.74, 0.71, 0.69]
    assert (table["status"] == "FINISHED").all()


def test_without_a_metric_the_newest_runs_come_first_and_top_limits(tracked):
    _, client, experiment_id = tracked
    table = compare_runs(client, experiment_id, top=2)
    assert table["run_name"].to_list() == ["failed", "lr-0.01"]


def test_an_unknown_metric_names_the_metrics_recorded(tracked):
    _, client, experiment_id = tracked
    with pytest.raises(NoSuchMetricError, match="'valid_f1'; recorded metrics: loss, valid_auc"):
        compare_runs(client, experiment_id, metric="valid_f1")


def test_the_cli_prints_the_table(tracked):
    home, _, _ = tracked
    result = CliRunner().invoke(
        main, ["--home", str(home), "runs", "compare", "--metric", "valid_auc", "--top", "2"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "/demo/flight_delay: 2 run(s)"
    assert lines[1].startswith("| run_id | run_name | metric.valid_auc | metric.loss | status |")
    assert "| lr-0.05 | 0.74 | 0.5 | FINISHED |" in lines[3]
    failing = CliRunner().invoke(main, ["--home", str(home), "runs", "compare", "--metric", "f1"])
    assert failing.exit_code == 1
    assert "no run of experiment" in failing.output


def test_trials_show_with_a_flag_and_columns_fit_the_terminal(tracked):
    home, client, experiment_id = tracked
    [parent] = client.search_runs([experiment_id], "attributes.run_name = 'lr-0.05'")
    trial = client.create_run(
        experiment_id, run_name="trial-1", tags={"mlflow.parentRunId": parent.info.run_id}
    )
    client.log_metric(trial.info.run_id, "valid_auc", 0.9)
    client.set_terminated(trial.info.run_id)
    ranked = compare_runs(client, experiment_id, metric="valid_auc")
    assert "trial-1" not in ranked["run_name"].to_list()
    with_trials = compare_runs(client, experiment_id, metric="valid_auc", trials=True)
    assert with_trials["run_name"][0] == "trial-1"
    runner = CliRunner()
    narrow = runner.invoke(
        main,
        ["--home", str(home), "runs", "compare", "--metric", "valid_auc"],
        env={"COLUMNS": "80"},
    )
    assert narrow.exit_code == 0, narrow.output
    table = [line for line in narrow.output.splitlines() if line.startswith("|")]
    assert max(map(len, table)) <= 80 and "metric.valid_auc" in table[0]
    assert narrow.output.splitlines()[-1].endswith("more column(s): --wide shows them")
    wide = runner.invoke(
        main, ["--home", str(home), "runs", "compare", "--wide", "--trials"], env={"COLUMNS": "80"}
    )
    assert "param.num_leaves" in wide.output and "trial-1" in wide.output


def test_the_cli_compares_the_runs_of_the_use_case_and_tenant_asked_for(tracked):
    home, _, _ = tracked
    runner = CliRunner()
    named = runner.invoke(main, ["--home", str(home), "runs", "-u", "flight_delay", "compare"])
    assert named.exit_code == 0, named.output
    assert named.output.splitlines()[0] == "/demo/flight_delay: 4 run(s)"
    other = runner.invoke(
        main, ["--home", str(home), "runs", "--use-case", "airport_rain", "compare"]
    )
    assert other.exit_code == 0, other.output
    assert other.output.splitlines()[0] == "/demo/airport_rain: 0 run(s)"
    acme = runner.invoke(main, ["--home", str(home), "--tenant", "acme", "runs", "compare"])
    assert acme.exit_code == 0, acme.output
    assert acme.output.splitlines()[0] == "/acme/flight_delay: 0 run(s)"
    unserved = runner.invoke(
        main, ["--home", str(home), "--tenant", "acme", "runs", "-u", "airport_rain", "compare"]
    )
    assert unserved.exit_code != 0
    assert "tenant 'acme' runs no use case 'airport_rain'; it runs: flight_delay" in (
        unserved.output
    )
    unknown = runner.invoke(main, ["--home", str(home), "--tenant", "initech", "runs", "compare"])
    assert unknown.exit_code != 0 and "no tenant 'initech' in tenants.yaml" in unknown.output
