"""The demo's models as a user finds them in MLflow: the runs, their trials, the staged
versions; the classifier walked through governance, serving and monitoring, and the
regression judged on RMSE against its baseline."""

import json
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from facilflow_assets.cli import main
from facilflow_assets.environment import Environment
from facilflow_assets.events.reader import EventReader
from facilflow_assets.governance.stages import STAGE_TAG
from facilflow_assets.resource_map import build_resources
from facilflow_assets.training.candidate import Candidate
from facilflow_assets.training.runs import compare_runs
from resources import EventsResource
from tests.conftest import DEMO_PLAN
from tests.lifecycle import lifecycle

MODEL_NAME = "demo.flight_delay"
FILES = Path("tenants", "demo", "flight_delay")


@pytest.fixture(scope="module")
def tracking(built_home):
    return build_resources(Environment.LOCAL, home=built_home.home)["mlflow"]


@pytest.fixture(scope="module")
def training_run(built_home, tracking):
    return tracking.client().get_run(built_home.model["mlflow_run_id"])


def test_the_demo_summary_shows_run_metrics_against_baseline_and_the_staged_version(built_home):
    model = built_home.model
    assert model["passed"] is True
    assert model["auc"] > model["baseline_auc"] > 0.5
    assert model["auc_lift"] == pytest.approx(model["auc"] / model["baseline_auc"] - 1)
    assert model["baseline"] == "carrier-hour rate"
    assert (model["registered_model"], model["version"], model["stage"]) == (
        MODEL_NAME,
        "1",
        "Staging",
    )
    written = json.loads((built_home.home / "demo-summary.json").read_text())
    assert written["model"]["mlflow_run_id"] == model["mlflow_run_id"]


def test_the_training_run_records_params_stepped_metrics_tags_and_duration(training_run, tracking):
    data = training_run.data
    assert {"learning_rate", "num_leaves", "num_boost_round", "num_workers"} <= set(data.params)
    rounds = int(data.params["num_boost_round"])
    history = tracking.client().get_metric_history(training_run.info.run_id, "valid_auc")
    assert [m.step for m in history] == list(range(1, rounds + 1))
    assert data.metrics["holdout_auc"] > 0.7
    for tag in (
        "dagster_run_id",
        "dagster.asset_key",
        "facilflow.tenant",
        "facilflow.use_case",
        "facilflow.feature_service",
        "facilflow.data_version",
        "mlflow.source.git.commit",
    ):
        assert data.tags.get(tag), tag
    assert data.tags["dagster.asset_key"] == "demo/flight_delay/training/trained_model"
    assert data.tags["facilflow.evaluation"] == "passed"
    # Named by its data and its Dagster run, described as the MLflow UI shows it.
    version, dagster_run = data.tags["facilflow.data_version"], data.tags["dagster_run_id"]
    assert training_run.info.run_name == f"train-{version[:8]}-{dagster_run[:8]}"
    description = data.tags["mlflow.note.content"]
    assert description.startswith("LightGBM binary model of flight-delay classifier")
    assert f"feature service flight_delay_v1, training set {version}" in description
    assert training_run.info.status == "FINISHED"
    assert training_run.info.end_time > training_run.info.start_time


def _artifacts(client, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def test_the_training_run_keeps_model_plots_log_and_evaluation_report(training_run, tracking):
    client = tracking.client()
    artifacts = _artifacts(client, training_run.info.run_id)
    assert {
        "training.log",
        "search_space.json",
        "plots/feature_importance.png",
        "evaluation/report.md",
        "evaluation/report.json",
        "evaluation/roc.png",
        "evaluation/calibration.png",
        "evaluation/confusion_matrix.png",
        "evaluation/feature_importance.png",
    } <= artifacts
    log = Path(client.download_artifacts(training_run.info.run_id, "training.log")).read_text()
    trials = DEMO_PLAN.training["num_trials"]
    assert f"best of {trials} trials" in log and "final fit (Ray Train, 2 workers)" in log


def test_the_model_is_logged_in_lightgbm_text_format_with_signature_and_example(
    built_home, tracking
):
    candidate = Candidate.read(built_home.home / FILES / "models" / "candidate.json")
    with tracking.fluent():
        local = Path(mlflow.artifacts.download_artifacts(candidate.model_uri))
    spec = yaml.safe_load((local / "MLmodel").read_text())
    assert spec["flavors"]["lightgbm"]["model_class"] == "lightgbm.basic.Booster"
    model_file = local / spec["flavors"]["lightgbm"]["data"]
    assert model_file.read_text().startswith("tree")  # LightGBM's text format, not a pickle
    inputs = json.loads(spec["signature"]["inputs"])
    assert [column["name"] for column in inputs] == candidate.feature_names
    assert (local / "input_example.json").exists()


def test_trials_are_nested_runs_compared_side_by_side(training_run, tracking):
    trials = compare_runs(
        tracking.client(),
        training_run.info.experiment_id,
        "best_valid_auc",
        top=50,
        parent_run_id=training_run.info.run_id,
    )
    assert trials.height == DEMO_PLAN.training["num_trials"]
    assert trials["status"].to_list() == ["FINISHED"] * trials.height
    assert {"param.learning_rate", "metric.best_valid_auc", "metric.rounds"} <= set(trials.columns)
    best = trials["metric.best_valid_auc"].to_list()
    assert best == sorted(best, reverse=True)


def test_the_demo_takes_the_version_to_production_through_the_approval_workflow(built_home):
    governance = built_home.governance
    assert governance["version"] == "1" and governance["stage"] == "Production"
    assert governance["self_approval"].startswith("refused: ")
    assert "carol requested this transition and cannot approve it" in governance["self_approval"]
    assert governance["approved_by"] == "dave"
    actions = [(r["action"], r["actor"], r["to_stage"]) for r in governance["history"]]
    assert actions == [
        ("transition", "facilflow", "Staging"),  # the evaluation passed: staged, audited
        ("request", "carol", "Production"),
        ("approval", "dave", ""),
        ("transition", "dave", "Production"),
    ]


def test_a_lifecycle_run_without_a_broker_keeps_its_events_and_each_arrives_once_later(
    built_home, training_run, broker
):
    trained = [
        "MODEL_TRAINING_STARTED",
        "MODEL_TRAINING_COMPLETED",
        "MODEL_REGISTERED",
    ]
    expected = [
        *trained,  # version 1
        "MODEL_TRANSITION_REQUESTED",
        "MODEL_TRANSITION_APPROVED",
        "MODEL_PROMOTED",
        *trained,  # the challenger, version 2
        "MODEL_DEPLOYED",
        "MODEL_DRIFT_DETECTED",  # the winter day's features
    ]
    regression = trained  # the arrival-delay model: trained and registered, nothing more
    waiting = len(expected) + len(regression)
    assert built_home.events == {"broker": None, "published": 0, "waiting": waiting}
    events = build_resources(Environment.LOCAL, home=built_home.home)["events"]
    online = EventsResource(
        outbox_url=events.outbox_url, bootstrap_servers=broker.bootstrap_servers
    )
    assert online.relay().published == waiting
    assert online.relay().published == 0
    with EventReader(broker.bootstrap_servers, online.topic) as reader:
        every = list(reader.events(idle_s=1.5))
    received = [e for e in every if e.model == MODEL_NAME]
    assert [e.type.value for e in received] == expected
    others = [e for e in every if e.model != MODEL_NAME]
    assert [(e.model, e.use_case, e.type.value) for e in others] == [
        ("demo.arrival_delay", "arrival_delay", kind) for kind in regression
    ]
    run_id = training_run.info.run_id
    assert [e.payload["mlflow_run_id"] for e in received[:3]] == [run_id] * 3
    assert [e.version for e in received[2:6]] == ["1"] * 4
    assert received[5].dagster_run_id == built_home.governance["promotion_run_id"]
    assert (
        received[0].dagster_run_id
        == received[1].dagster_run_id
        == training_run.data.tags["dagster_run_id"]
    )
    deployed, drift = received[-2:]
    assert (drift.payload["kind"], drift.payload["partition"]) == ("feature", "2013-01-15")
    assert (deployed.version, deployed.payload["challenger_version"]) == ("1", "2")
    assert deployed.payload["url"] == built_home.serving["endpoint"]


def test_the_demo_shows_a_clean_summer_day_and_a_drifted_winter_day(built_home, tracking):
    days = built_home.monitoring["days"]
    summer, winter = days["2013-06-15"], days["2013-01-15"]
    assert not summer["feature_drift"] and summer["drift_share"] < 0.1
    assert winter["feature_drift"] and winter["drift_share"] >= 0.1
    assert "weather_hourly__temperature_f" in winter["drifted_features"]
    assert not summer["prediction_drift"]
    # The summer day's flights were as predictable as the holdout's; the winter day is
    # judged too, whatever its outcomes say.
    assert summer["checks"] == {
        "no_feature_drift": True,
        "no_prediction_drift": True,
        "quality_holds": True,
    }
    assert {k: v for k, v in winter["checks"].items() if k != "quality_holds"} == {
        "no_feature_drift": False,
        "no_prediction_drift": True,
    }
    for day in (summer, winter):  # realized, holdout and estimated AUC of version 1
        for name in ("auc_v1", "holdout_auc_v1", "estimated_auc_v1"):
            assert 0.5 < day["quality"][name] < 1, name
    assert winter["degraded_versions"] == ([] if winter["checks"]["quality_holds"] else ["1"])
    assert Path(winter["report"]).read_text().lstrip().startswith("<")
    runs = tracking.client().search_runs(
        [tracking.ensure_experiment(lifecycle().scope).experiment_id],
        filter_string="tags.`facilflow.partition` = '2013-01-15'",
    )
    assert {r.info.run_name for r in runs} == {
        "feature-drift-2013-01-15",
        "prediction-drift-2013-01-15",
        "realized-quality-2013-01-15",
    }
    health = built_home.monitoring["serving_health"]
    assert health["requests"] >= 200 and health["breached_versions"] == []


def test_the_promoted_version_has_its_alias_tags_and_serves_predictions(
    built_home, training_run, tracking
):
    client = tracking.client()
    version = client.get_model_version_by_alias(MODEL_NAME, "production")
    assert str(version.version) == "1"
    assert version.run_id == training_run.info.run_id
    assert version.tags[STAGE_TAG] == "Production"
    assert (
        version.tags["facilflow.promotion.dagster_run_id"]
        == (built_home.governance["promotion_run_id"])
    )
    assert version.tags["facilflow.source_run"] == training_run.info.run_id
    assert version.tags["facilflow.feature_service"] == "flight_delay_v1"
    assert (
        version.tags["facilflow.data_version"] == training_run.data.tags["facilflow.data_version"]
    )
    assert float(version.tags["facilflow.holdout_auc"]) == pytest.approx(
        training_run.data.metrics["holdout_auc"], abs=1e-6
    )
    assert "Holdout AUC" in version.description
    with tracking.fluent():
        model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@production")
    example = model.input_example
    predictions = np.asarray(model.predict(example))
    assert predictions.shape == (len(example),)
    assert ((predictions > 0) & (predictions < 1)).all()


def test_runs_compare_cli_ranks_the_experiment_by_a_holdout_metric(built_home, training_run):
    result = CliRunner().invoke(
        main, ["--home", str(built_home.home), "runs", "compare", "--metric", "holdout_auc"]
    )
    assert result.exit_code == 0, result.output
    assert training_run.info.run_id[:8] in result.output
    assert "metric.holdout_auc" in result.output.splitlines()[1]


def test_the_regression_use_case_beats_its_baseline_on_holdout_rmse(built_home, tracking):
    """arrival_delay, declared in YAML alone: minutes late at arrival, trained, judged on
    RMSE against the route-hour mean over the same holdout flights, and staged."""
    model = built_home.models["arrival_delay"]
    assert model["passed"] is True
    assert model["rmse"] < model["baseline_rmse"]
    assert model["rmse_lift"] == pytest.approx(1 - model["rmse"] / model["baseline_rmse"])
    assert model["baseline"] == "route-hour mean"
    assert (model["registered_model"], model["version"], model["stage"]) == (
        "demo.arrival_delay",
        "1",
        "Staging",
    )
    client = tracking.client()
    run = client.get_run(model["mlflow_run_id"])
    assert run.data.metrics["holdout_rmse"] == pytest.approx(model["rmse"])
    assert {"holdout_mae", "holdout_bias", "holdout_r2", "final_valid_rmse"} <= set(
        run.data.metrics
    )
    rounds = int(run.data.params["num_boost_round"])
    history = client.get_metric_history(run.info.run_id, "valid_rmse")
    assert [m.step for m in history] == list(range(1, rounds + 1))
    # Fitted in the step's process (num_workers 0), with the same records as a Ray Train fit.
    assert run.data.params["num_workers"] == "0"
    log = Path(client.download_artifacts(run.info.run_id, "training.log")).read_text()
    assert f"final fit (in process): {rounds} rounds" in log
    artifacts = _artifacts(client, run.info.run_id)
    assert {"evaluation/predicted_vs_actual.png", "evaluation/residuals.png"} <= artifacts
    assert not {"evaluation/roc.png", "evaluation/calibration.png"} & artifacts
    version = client.get_model_version("demo.arrival_delay", "1")
    assert "Holdout RMSE" in version.description
    assert float(version.tags["facilflow.holdout_rmse"]) == pytest.approx(model["rmse"], abs=1e-4)
    training = built_home.home / "tenants" / "demo" / "arrival_delay" / "training"
    assert [p.name for p in training.iterdir()] == ["arrival_delay_v1.parquet"]
