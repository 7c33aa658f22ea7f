"""Ray Tune on a real local Ray: failed trials are recorded, an interrupted search resumes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import ray
from ray import tune

from facilflow_assets.environment import PROJECT_ROOT, Environment
from facilflow_assets.resource_map import build_resources
from facilflow_assets.scope import ModelScope
from facilflow_assets.training.config import parse_utc, training_config_for
from facilflow_assets.training.dataset import split_training_data
from facilflow_assets.training.tracking import TRIAL_TAG, log_trials
from facilflow_assets.training.tuning import TuningError, tune_hyperparameters
from facilflow_assets.use_case import load_use_case, use_case_path
from resources import RayResource
from resources.ray_cluster import LOCAL_RAY_ENV
from tests.mlflow_server import free_port
from tests.training_data import synthetic_training_set

pytestmark = pytest.mark.slow

SCOPE = ModelScope("demo", "flight_delay")
# The synthetic set has the flight-delay layout: its use case's feature service and splits.
FlightDelayConfig = training_config_for(load_use_case(use_case_path(SCOPE.use_case)))
SPACE = {"learning_rate": {"distribution": "loguniform", "low": 0.05, "high": 0.3}}
# LightGBM refuses num_leaves=1 when a trial starts: those trials fail, the others run.
SOMETIMES_FAILING = {**SPACE, "num_leaves": {"distribution": "choice", "values": [1, 15]}}


def _data(rows: int = 6000):
    return split_training_data(
        synthetic_training_set(rows),
        "synthetic",
        "is_delayed",
        parse_utc("2013-01-01"),
        parse_utc("2013-10-01"),
        parse_utc("2013-11-01"),
    )


@pytest.fixture(scope="module")
def local_ray():
    # "local": a Ray of its own, not a cluster `ray start` runs on this machine meanwhile.
    # Its authentication mode is the one every local Ray of FacilFlow's uses: Ray reads it
    # once per process, and a later step's local Ray would not accept this driver otherwise.
    os.environ.update(LOCAL_RAY_ENV)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_a_failing_trial_is_recorded_and_the_search_goes_on(local_ray, tmp_path):
    config = FlightDelayConfig(
        search_space=SOMETIMES_FAILING, num_trials=4, max_rounds=30, grace_rounds=30, seed=3
    )
    outcome = tune_hyperparameters(_data(), config, str(tmp_path / "tune-failing"))
    statuses = sorted(t.status for t in outcome.trials)
    assert len(outcome.trials) == 4
    assert "FAILED" in statuses and "FINISHED" in statuses, statuses
    for trial in outcome.failed:
        assert trial.hyperparameters["num_leaves"] == 1
        assert "num_leaves" in trial.error
    assert outcome.best.hyperparameters["num_leaves"] == 15
    assert outcome.best.rounds == 30

    mlflow = build_resources(Environment.LOCAL, home=tmp_path / "home")["mlflow"]
    client = mlflow.client()
    experiment_id = mlflow.ensure_experiment(SCOPE).experiment_id
    parent = client.create_run(experiment_id, run_name="search")
    log_trials(client, experiment_id, parent.info.run_id, outcome, {"facilflow.tenant": "demo"})
    log_trials(client, experiment_id, parent.info.run_id, outcome, {})  # again: nothing new
    children = client.search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert len(children) == 4
    by_trial = {run.data.tags[TRIAL_TAG]: run for run in children}
    for trial in outcome.trials:
        run = by_trial[trial.trial_id]
        assert run.info.status == trial.status
        assert run.data.params["num_leaves"] == str(trial.hyperparameters["num_leaves"])
        if trial.status == "FAILED":
            assert "num_leaves" in run.data.tags["facilflow.error"]
        else:
            steps = client.get_metric_history(run.info.run_id, "valid_auc")
            assert [m.step for m in steps] == list(range(1, 31))
            assert run.data.metrics["best_valid_auc"] == pytest.approx(trial.best_score)


def test_a_search_where_every_trial_fails_says_why(local_ray, tmp_path):
    space = {**SPACE, "num_leaves": {"distribution": "choice", "values": [1]}}
    config = FlightDelayConfig(search_space=space, num_trials=2, max_rounds=10, grace_rounds=5)
    with pytest.raises(TuningError, match="all 2 trials failed; the first: .*num_leaves"):
        tune_hyperparameters(_data(), config, str(tmp_path / "tune-all-failing"))


INTERRUPTED_SEARCH = """
import sys
import ray
from tests.test_tuning import RESUMABLE, _data
from facilflow_assets.training.tuning import tune_hyperparameters
ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
tune_hyperparameters(_data(40000), RESUMABLE, sys.argv[1])
"""
RESUMABLE = FlightDelayConfig(
    search_space=SPACE, num_trials=3, max_rounds=300, grace_rounds=300, checkpoint_every=20
)


def test_an_interrupted_search_resumes_from_its_checkpoints(local_ray, tmp_path):
    path = tmp_path / "tune-resumable"
    search = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_SEARCH, str(path)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        checkpoints = _wait_for_checkpoint(path, search, timeout_s=180)
        search.send_signal(signal.SIGINT)  # as Ctrl-C, or a stopped Dagster step
        search.wait(timeout=120)
    finally:
        if search.poll() is None:
            search.kill()
    assert checkpoints, "the search wrote no checkpoint before it was interrupted"
    started_before = {p.name for p in path.iterdir() if p.is_dir()}
    assert tune.Tuner.can_restore(str(path))

    outcome = tune_hyperparameters(_data(40000), RESUMABLE, str(path))
    assert outcome.resumed
    assert started_before <= {t.trial_id for t in outcome.trials}
    assert len(outcome.trials) == 3
    for trial in outcome.trials:
        assert trial.status == "FINISHED"
        # Every round reported once, across the interruption.
        assert trial.rounds == 300


def _wait_for_checkpoint(path: Path, process: subprocess.Popen, timeout_s: float) -> list[Path]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        found = list(path.glob("*/checkpoint_*")) if path.exists() else []
        if found:
            return found
        time.sleep(0.2)
    return []


def test_checkpoints_honour_the_configured_location(tmp_path):
    ray_cluster = build_resources(Environment.LOCAL, home=tmp_path)["ray_cluster"]
    assert ray_cluster.checkpoint_path(SCOPE.tenant, SCOPE.use_case, "tune-x") == os.path.join(
        tmp_path.resolve(), "ray", "demo", "flight_delay", "tune-x"
    )
    assert ray_cluster.storage_filesystem() is None


def test_checkpoints_go_to_an_s3_compatible_store(local_ray, tmp_path, monkeypatch):
    # moto's standalone server is the S3-compatible endpoint available here.
    from moto.server import ThreadedMotoServer

    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(variable, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port())
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{server._port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="checkpoints")
        ray_cluster = RayResource(
            storage_path="s3://checkpoints/facilflow", s3_endpoint_url=endpoint
        )
        path = ray_cluster.checkpoint_path("demo", "flight_delay", "tune-s3")
        config = FlightDelayConfig(
            search_space=SPACE, num_trials=2, max_rounds=20, grace_rounds=20, checkpoint_every=10
        )
        filesystem = ray_cluster.storage_filesystem()
        outcome = tune_hyperparameters(_data(), config, path, filesystem)
        assert [t.status for t in outcome.trials] == ["FINISHED", "FINISHED"]
        keys = [
            item["Key"]
            for item in s3.list_objects_v2(Bucket="checkpoints", Prefix="facilflow/")["Contents"]
        ]
        for trial in outcome.trials:
            prefix = f"facilflow/demo/flight_delay/tune-s3/{trial.trial_id}/checkpoint_"
            saved = [k for k in keys if k.startswith(prefix) and k.endswith("/model.txt")]
            assert len(saved) == 2, keys  # rounds 10 and 20
        assert tune.Tuner.can_restore(path, storage_filesystem=filesystem)
    finally:
        server.stop()
