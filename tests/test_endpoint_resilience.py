"""The endpoint as an operator runs it: started by `facilflow serve start` in a process that
then exits, updated from another, probed from this one. An update whose replicas cannot start
leaves the endpoint serving what it served, and a replica killed is replaced by itself
(test_lifecycle_daemon.py deploys a new version the same way, through the daemon)."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import ray

from facilflow_assets.governance.stages import Stage
from facilflow_assets.serving.rollout import app_name, route_prefix
from resources.ray_cluster import LOCAL_RAY_ENV
from tests.endpoint_probe import Probe, facilflow
from tests.mlflow_server import free_port, stop_process_group
from tests.test_serving import FLIGHT_DELAY, Deployment

pytestmark = pytest.mark.slow

SCOPE = FLIGHT_DELAY.scope
JOIN_TIMEOUT_S = 60
RECOVERY_BOUND_S = 30  # a killed replica's replacement answers within this
KILL_SETTLES_S = 0.2
# The broken node's replica never starts (nor fails): the update is refused once this is up.
TRIAL_TIMEOUT_S = 20


@pytest.fixture(scope="module")
def served(built_home, tmp_path_factory):
    """A copy of the demo's home whose endpoint a process that has exited started."""
    home = tmp_path_factory.mktemp("resilience") / "facilflow"
    shutil.copytree(built_home.home, home)
    port = free_port()
    deployment = Deployment(home, http_port=port)
    deployment.url = deployment.resources["serving"].endpoint_url(route_prefix(SCOPE))
    try:
        started = facilflow(home, port, "serve", "start")
        assert started.returncode == 0, started.stderr[-3000:]
        yield deployment, port
    finally:
        deployment.resources["serving"].stop_local_cluster()


def _replica_pids(deployment: Deployment) -> list[int]:
    return deployment.resources["serving"].running_replica_pids(app_name(SCOPE))


def test_a_killed_replica_is_replaced_and_the_endpoint_recovers(served, record_property):
    deployment, _ = served
    [replica] = _replica_pids(deployment)
    with Probe(deployment) as probe:
        time.sleep(1)
        killed_at = time.monotonic()
        os.kill(replica, signal.SIGKILL)
        # An answer read just after the kill may have left the replica just before it.
        settled = killed_at + KILL_SETTLES_S
        deadline = killed_at + RECOVERY_BOUND_S
        while not any(t > settled for t in probe.answered_at[-5:]):
            assert time.monotonic() < deadline, f"no answer {RECOVERY_BOUND_S} s after the kill"
            time.sleep(0.2)
        recovered_s = min(t for t in probe.answered_at if t > settled) - killed_at
        time.sleep(1)
    record_property("recovery_s", round(recovered_s, 2))  # in the JUnit report
    record_property("failed_requests", len(probe.failures))
    assert recovered_s < RECOVERY_BOUND_S
    assert all(at > killed_at for at, _ in probe.failures)  # none before the kill
    assert not psutil.pid_exists(replica) or psutil.Process(replica).status() == "zombie"


def _join_node(address: str, log: Path, env: dict[str, str]) -> subprocess.Popen:
    """A second node of one CPU, started with `env`, in a session of its own."""
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--block",
            "--address",
            address,
            "--node-ip-address",
            "127.0.0.1",
            "--num-cpus",
            "1",
            "--disable-usage-stats",
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )


def _alive_nodes(address: str) -> int:
    os.environ.update(LOCAL_RAY_ENV)  # as every local Ray of the project
    ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        return sum(node["Alive"] for node in ray.nodes())
    finally:
        ray.shutdown()
        os.environ.pop("RAY_ADDRESS", None)  # set by ray.init; the next init is local


def test_an_update_whose_replicas_cannot_start_leaves_the_endpoint_serving(served, tmp_path):
    deployment, port = served
    home = deployment.home
    # A node whose replicas die in __init__, as every replica did once the process that
    # started the head had exited: Feast's metrics folder in its environment is gone.
    gone = tmp_path / "feast_metrics_gone"
    broken = {
        **os.environ,
        **LOCAL_RAY_ENV,
        "PROMETHEUS_MULTIPROC_DIR": str(gone),
        "PROMETHEUS_MULTIPROCESS_DIR": str(gone),
    }
    address = deployment.resources["serving"].running_cluster_address()
    assert address
    node = _join_node(address, tmp_path / "node.log", broken)
    try:
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while _alive_nodes(address) < 2:
            assert node.poll() is None and time.monotonic() < deadline, (
                tmp_path / "node.log"
            ).read_text()[-2000:]
            time.sleep(1)
        new = deployment.add_staging_version()
        deployment.move(new, Stage.PRODUCTION)
        with Probe(deployment) as probe:
            time.sleep(1)
            update = facilflow(
                home,
                port,
                *("serve", "start", "--replicas", "2", "--max-replicas-per-node", "1"),
                *("--trial-timeout", str(TRIAL_TIMEOUT_S)),
            )
            time.sleep(2)
        assert update.returncode == 1, update.stdout + update.stderr[-3000:]
        assert "did not start, so the endpoint was not updated" in update.stderr
        assert f"not running after {TRIAL_TIMEOUT_S}" in update.stderr
        assert probe.failures == []
        assert set(probe.versions) == {"1"}
        status = facilflow(home, port, "serve", "status")
        assert status.returncode == 0 and "production   version 1" in status.stdout
    finally:
        stop_process_group(node)
