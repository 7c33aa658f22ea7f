"""Each use case's MLflow experiment, on the local sqlite store and on a real tracking
server; one resource serves every tenant's use cases."""

import time

import dagster as dg
import mlflow as fluent
import pytest
from dagster_mlflow import end_mlflow_on_run_finished
from mlflow.entities import Metric, Param

from facilflow_assets.environment import Environment
from facilflow_assets.resource_map import build_resources
from facilflow_assets.scope import ModelScope
from resources import MlflowResource, TrackingUnavailableError
from resources.mlflow import DAGSTER_RUN_TAG
from tests.mlflow_server import free_port, mlflow_server

DEMO = ModelScope("demo", "flight_delay")
ACME = ModelScope("acme", "flight_delay")


@pytest.fixture(scope="module")
def server_url(tmp_path_factory) -> str:
    artifacts = tmp_path_factory.mktemp("mlflow") / "artifacts"
    with mlflow_server(artifacts) as url:
        yield url


def _log_a_run(resource: MlflowResource, scope: ModelScope, tmp_path) -> tuple[str, str]:
    experiment = resource.ensure_experiment(scope)
    client = resource.client()
    run = client.create_run(experiment.experiment_id, tags={"facilflow.tenant": scope.tenant})
    now = int(time.time() * 1000)
    client.log_batch(
        run.info.run_id,
        params=[Param("learning_rate", "0.05")],
        metrics=[Metric("valid_auc", 0.6 + step / 100, now, step) for step in range(5)],
    )
    report = tmp_path / "report.md"
    report.write_text("# evaluation\n")
    client.log_artifact(run.info.run_id, str(report))
    client.set_terminated(run.info.run_id)
    return experiment.experiment_id, run.info.run_id


def _assert_run_reads_back(resource: MlflowResource, run_id: str) -> None:
    client = resource.client()
    history = client.get_metric_history(run_id, "valid_auc")
    assert [(m.step, round(m.value, 2)) for m in history] == [
        (s, round(0.6 + s / 100, 2)) for s in range(5)
    ]
    assert client.get_run(run_id).data.params == {"learning_rate": "0.05"}
    assert [a.path for a in client.list_artifacts(run_id)] == ["report.md"]


def test_the_local_experiment_is_created_once_with_its_description(tmp_path):
    resource = build_resources(Environment.LOCAL, home=tmp_path)["mlflow"]
    first = resource.ensure_experiment(DEMO)
    again = resource.ensure_experiment(DEMO)
    assert first.experiment_id == again.experiment_id
    assert first.name == "/demo/flight_delay"
    assert "flight_delay" in first.tags["mlflow.note.content"]
    assert first.tags["facilflow.tenant"] == "demo"
    assert first.tags["facilflow.use_case"] == "flight_delay"
    # The MLflow UI opens it on its runs; an experiment made before gets the kind too.
    assert first.tags["mlflow.experimentKind"] == "custom_model_development"
    client = resource.client()
    client.delete_experiment_tag(first.experiment_id, "mlflow.experimentKind")
    marked = resource.ensure_experiment(DEMO)
    assert client.get_experiment(marked.experiment_id).tags["mlflow.experimentKind"] == (
        "custom_model_development"
    )
    assert first.artifact_location == (tmp_path / "mlflow/artifacts/demo/flight_delay").as_uri()
    _, run_id = _log_a_run(resource, DEMO, tmp_path)
    _assert_run_reads_back(resource, run_id)
    assert (tmp_path / "mlflow" / "mlflow.db").exists()


def test_a_tracking_server_on_postgresql_keeps_runs_metrics_and_artifacts(server_url, tmp_path):
    resource = MlflowResource(tracking_uri=server_url, artifact_root="mlflow-artifacts:/")
    experiment_id, run_id = _log_a_run(resource, ACME, tmp_path)
    assert resource.client().get_experiment(experiment_id).name == "/acme/flight_delay"
    _assert_run_reads_back(resource, run_id)


def test_tenants_and_use_cases_get_separate_experiments_on_one_server(server_url):
    resource = MlflowResource(tracking_uri=server_url, artifact_root="mlflow-artifacts:/")
    scopes = [ACME, ModelScope("globex", "flight_delay"), ModelScope("acme", "airport_rain")]
    experiments = {scope: resource.ensure_experiment(scope) for scope in scopes}
    assert len({e.experiment_id for e in experiments.values()}) == len(scopes)
    assert [e.name for e in experiments.values()] == [s.experiment_name for s in scopes]
    # Each under its own id in the server's store, where MLflow checks its permissions.
    for experiment in experiments.values():
        assert experiment.artifact_location == f"mlflow-artifacts:/{experiment.experiment_id}"
    assert experiments[ModelScope("acme", "airport_rain")].tags["facilflow.use_case"] == (
        "airport_rain"
    )


def test_an_unreachable_tracking_server_fails_fast_and_names_the_uri():
    url = f"http://127.0.0.1:{free_port()}"
    resource = MlflowResource(tracking_uri=url, artifact_root="mlflow-artifacts:/")
    started = time.monotonic()
    with pytest.raises(TrackingUnavailableError, match=f"tracking server at {url} does not"):
        resource.ensure_experiment(ACME)
    assert time.monotonic() - started < 10


def test_dagster_mlflows_hook_fails_the_runs_a_failed_step_left_open(tmp_path):
    """In every experiment the run's steps wrote to, and only the runs of this Dagster run."""
    resources = build_resources(Environment.LOCAL, home=tmp_path)
    client = resources["mlflow"].client()
    bystander = client.create_run(
        resources["mlflow"].ensure_experiment(DEMO).experiment_id,
        tags={DAGSTER_RUN_TAG: "another-dagster-run"},
    ).info.run_id
    opened = {}

    @dg.asset
    def crashes_mid_run(mlflow: MlflowResource) -> None:
        client = mlflow.client()
        for scope in (DEMO, ACME):
            experiment = mlflow.ensure_experiment(scope)
            run = client.create_run(
                experiment.experiment_id, tags={DAGSTER_RUN_TAG: mlflow.dagster_run_id}
            )
            opened[scope] = run.info.run_id
        raise RuntimeError("the step dies with its MLflow runs still open")

    job = dg.define_asset_job("crashing", hooks={end_mlflow_on_run_finished})
    definitions = dg.Definitions(
        assets=[crashes_mid_run], jobs=[job], resources={"mlflow": resources["mlflow"]}
    )
    result = definitions.resolve_job_def("crashing").execute_in_process(raise_on_error=False)
    assert not result.success
    assert set(opened) == {DEMO, ACME}
    for run_id in opened.values():
        run = client.get_run(run_id)
        assert run.data.tags[DAGSTER_RUN_TAG] == result.run_id
        assert run.info.status == "FAILED"
    assert client.get_run(bystander).info.status == "RUNNING"


def test_a_tracked_run_lands_in_its_scope_s_experiment_tagged_with_the_dagster_run(tmp_path):
    resources = build_resources(Environment.LOCAL, home=tmp_path)
    tracked = {}

    @dg.asset
    def trains(mlflow: MlflowResource) -> None:
        for scope in (DEMO, ACME):
            with mlflow.tracked_run(scope, "train", {"facilflow.stage": "training"}) as run:
                fluent.log_param("scope", scope.feast_project)
            tracked[scope] = run.info.run_id
        with mlflow.tracked_run(DEMO, "ignored", {}, resume_run_id=tracked[DEMO]):
            fluent.log_metric("resumed", 1.0)

    result = dg.materialize([trains], resources={"mlflow": resources["mlflow"]})
    client = resources["mlflow"].client()
    for scope, run_id in tracked.items():
        run = client.get_run(run_id)
        experiment = client.get_experiment(run.info.experiment_id)
        assert experiment.name == scope.experiment_name
        assert run.data.params == {"scope": scope.feast_project}
        assert run.data.tags[DAGSTER_RUN_TAG] == result.run_id
        assert run.data.tags["facilflow.stage"] == "training"
        assert (run.info.run_name, run.info.status) == ("train", "FINISHED")
    assert client.get_run(tracked[DEMO]).data.metrics == {"resumed": 1.0}
