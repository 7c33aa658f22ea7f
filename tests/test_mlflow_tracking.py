"""The use case's MLflow experiment, on the local sqlite store and on a real tracking server."""

import time

import dagster as dg
import pytest
from dagster_mlflow import end_mlflow_on_run_finished
from mlflow.entities import Metric, Param

from facilflow_assets.environment import Environment
from facilflow_assets.resource_map import build_resources
from resources import MlflowResource, TenantResource, TrackingUnavailableError
from resources.mlflow import DAGSTER_RUN_TAG
from tests.mlflow_server import free_port, mlflow_server


@pytest.fixture(scope="module")
def server_url(tmp_path_factory) -> str:
    artifacts = tmp_path_factory.mktemp("mlflow") / "artifacts"
    with mlflow_server(artifacts) as url:
        yield url


def _log_a_run(resource: MlflowResource, tmp_path) -> tuple[str, str]:
    experiment = resource.ensure_experiment()
    client = resource.client()
    run = client.create_run(experiment.experiment_id, tags={"facilflow.tenant": "acme"})
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
    first = resource.ensure_experiment()
    again = resource.ensure_experiment()
    assert first.experiment_id == again.experiment_id
    assert first.name == "/demo/flight_delay"
    assert "flight_delay" in first.tags["mlflow.note.content"]
    assert first.tags["facilflow.tenant"] == "demo"
    assert first.artifact_location == (tmp_path / "mlflow/artifacts/demo/flight_delay").as_uri()
    _, run_id = _log_a_run(resource, tmp_path)
    _assert_run_reads_back(resource, run_id)
    assert (tmp_path / "mlflow" / "mlflow.db").exists()


def test_a_tracking_server_on_postgresql_keeps_runs_metrics_and_artifacts(server_url, tmp_path):
    resource = MlflowResource(
        tracking_uri=server_url,
        artifact_root="mlflow-artifacts:/",
        tenant=TenantResource(tenant="acme", use_case="flight_delay"),
    )
    experiment_id, run_id = _log_a_run(resource, tmp_path)
    assert resource.client().get_experiment(experiment_id).name == "/acme/flight_delay"
    _assert_run_reads_back(resource, run_id)


def test_tenants_get_separate_experiments_on_one_server(server_url):
    experiments = {
        tenant: MlflowResource(
            tracking_uri=server_url,
            artifact_root="mlflow-artifacts:/",
            tenant=TenantResource(tenant=tenant, use_case="flight_delay"),
        ).ensure_experiment()
        for tenant in ("acme", "globex")
    }
    assert experiments["acme"].experiment_id != experiments["globex"].experiment_id
    assert experiments["globex"].artifact_location.endswith("/globex/flight_delay")


def test_an_unreachable_tracking_server_fails_fast_and_names_the_uri():
    url = f"http://127.0.0.1:{free_port()}"
    resource = MlflowResource(
        tracking_uri=url,
        artifact_root="mlflow-artifacts:/",
        tenant=TenantResource(tenant="acme", use_case="flight_delay"),
    )
    started = time.monotonic()
    with pytest.raises(TrackingUnavailableError, match=f"tracking server at {url} does not"):
        resource.ensure_experiment()
    assert time.monotonic() - started < 10


def test_dagster_mlflows_hook_fails_the_runs_a_failed_step_left_open(tmp_path):
    resources = build_resources(Environment.LOCAL, home=tmp_path)
    opened = {}

    @dg.asset
    def crashes_mid_run(mlflow: MlflowResource) -> None:
        client = mlflow.client()
        experiment = mlflow.ensure_experiment()
        run = client.create_run(
            experiment.experiment_id, tags={DAGSTER_RUN_TAG: mlflow.dagster_run_id}
        )
        opened["run_id"] = run.info.run_id
        raise RuntimeError("the step dies with its MLflow run still open")

    job = dg.define_asset_job("crashing", hooks={end_mlflow_on_run_finished})
    definitions = dg.Definitions(
        assets=[crashes_mid_run], jobs=[job], resources={"mlflow": resources["mlflow"]}
    )
    result = definitions.resolve_job_def("crashing").execute_in_process(raise_on_error=False)
    assert not result.success
    run = resources["mlflow"].client().get_run(opened["run_id"])
    assert run.data.tags[DAGSTER_RUN_TAG] == result.run_id
    assert run.info.status == "FAILED"
