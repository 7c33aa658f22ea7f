"""The lifecycle sensors as `make dev` runs them: a real `dagster-daemon` over workspace.yaml's
demo location and deploy/local-dagster.yaml, on a copy of the demo's stores. The endpoint
runs as after `make demo`: started by a process that has exited (`facilflow serve start`).
A Production request approved in the registry moves the alias, and the endpoint then
answers with the new version, deployed by a run in yet another process, with no one
launching a run and no request failing meanwhile."""

import json
import os
import shutil

import dagster as dg
import psutil
import pytest
import requests

from facilflow_assets.environment import PROJECT_ROOT
from facilflow_assets.governance.audit import AuditTrail
from facilflow_assets.governance.requests import Decision, decide, request_production
from facilflow_assets.governance.stages import STAGE_TAG, Stage
from facilflow_assets.serving.rollout import route_prefix
from resources.serving import HEAD_FILE
from tests.daemon import start_daemon, wait_for, workspace_of
from tests.endpoint_probe import Probe, facilflow
from tests.mlflow_server import free_port, stop_process_group
from tests.test_governance import APPROVERS
from tests.test_serving import FLIGHT_DELAY, MODEL, Deployment

pytestmark = pytest.mark.slow

# From the daemon's start: its code servers load, the approval sensor ticks (every 30 s),
# the promotion runs, the redeploy sensor ticks and the deployment runs.
ROUND_TRIP_TIMEOUT_S = 600


def _answering_version(deployment: Deployment) -> str | None:
    try:
        response = deployment.post(deployment.sample)
    except requests.ConnectionError:  # no endpoint yet
        return None
    return response.json()["model_version"] if response.ok else None


def _the_head_took_nothing_of_the_process_that_started_it(home) -> None:
    """Not Feast's metrics folder, which went with that process (no replica could start
    without it), nor Ray's settings for that process's driver."""
    head = psutil.Process(json.loads((home / "serve" / HEAD_FILE).read_text())["pgid"])
    inherited = {"PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR", "RAY_ADDRESS"}
    assert not inherited & set(head.environ())


# Four runs launched as subprocesses (two deployments, each starting replicas), each
# importing the code location: on a busy 2-core machine the chain alone passed 900 s.
@pytest.mark.timeout(1800)
def test_an_approval_reaches_production_and_the_endpoint_through_the_daemon(built_home, tmp_path):
    home, dagster_home = tmp_path / "facilflow", tmp_path / "dagster_home"
    shutil.copytree(built_home.home, home)
    dagster_home.mkdir()
    shutil.copy(PROJECT_ROOT / "deploy" / "local-dagster.yaml", dagster_home / "dagster.yaml")
    port = free_port()
    served = Deployment(home, http_port=port)  # the same endpoint the daemon's runs deploy
    served.url = served.resources["serving"].endpoint_url(route_prefix(FLIGHT_DELAY.scope))
    before = served.client.get_model_version_by_alias(MODEL, "production").version
    version = served.add_staging_version()
    audit = AuditTrail(served.client, FLIGHT_DELAY.scope.audit_experiment_name)
    request_production(served.client, audit, MODEL, version, "alice", "beats production")
    decide(served.client, audit, MODEL, version, "dave", Decision.APPROVED, "ok", APPROVERS)

    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "FACILFLOW_HOME": str(home),
        "FACILFLOW_SERVE_PORT": str(port),
    }
    log = tmp_path / "daemon.log"
    workspace = workspace_of({FLIGHT_DELAY.scope.tenant}, tmp_path / "workspace.yaml")
    try:
        started = facilflow(home, port, "serve", "start")  # starts the local head, exits
        assert started.returncode == 0, started.stderr[-3000:]
        assert started.stdout.strip() == f"{served.url} serves version {before}"
        _the_head_took_nothing_of_the_process_that_started_it(home)
        with Probe(served) as probe:
            daemon = start_daemon(env, log, workspace)
            try:
                wait_for(lambda: _answering_version(served) == version, ROUND_TRIP_TIMEOUT_S, log)
            finally:
                stop_process_group(daemon)
        assert probe.failures == []
        assert set(probe.versions) == {str(before), version}
        status = facilflow(home, port, "serve", "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "application  RUNNING" in status.stdout
        assert f"production   version {version}" in status.stdout
    finally:
        served.resources["serving"].stop_local_cluster()

    assert str(served.client.get_model_version_by_alias(MODEL, "production").version) == version
    assert served.client.get_model_version(MODEL, before).tags[STAGE_TAG] == Stage.ARCHIVED
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        promotion, deployment = (
            instance.get_runs(
                dg.RunsFilter(
                    job_name=FLIGHT_DELAY.scope.definition_name(job),
                    tags={"facilflow/version": version},
                )
            )
            for job in ("promotion_job", "deployment_job")
        )
    assert [run.status for run in promotion] == [dg.DagsterRunStatus.SUCCESS]
    assert promotion[0].tags["dagster/sensor_name"] == "flight_delay_approval_sensor"
    assert [run.tags["dagster/sensor_name"] for run in deployment] == [
        "flight_delay_redeploy_sensor"
    ]
