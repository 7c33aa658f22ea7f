"""The real-time endpoint under steady load while a replica is killed and an update rolls out.

Eight client threads, each with a keep-alive session, post the sample request for
`--seconds`. A quarter of the way in, the replica is killed (SIGKILL); half-way, an update
is rolled out as the deployment asset rolls it out (checks, a trial of the new replicas,
then Ray Serve's update): the Staging version as challenger for half of the requests, or,
with no Staging version, Production again. Ray Serve restarts the replica on an update,
so either is a full rollout. Reported: latency percentiles and throughput of the answered
requests; the non-2xx answers (and connection errors, as status 0) to the requests sent
during the rollout, and to those in flight at the kill or sent after it until the
rollout; how long after the kill the endpoint answered again; how long the rollout took.
Runs on a copy of the working directory (`make demo`'s by default, or `--home`): the
endpoint runs on a Ray head of its own. Ends with one JSON line.
"""

import argparse
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import numpy as np
import requests
from mlflow.exceptions import MlflowException

from facilflow_assets.environment import LOCAL_HOME, Environment
from facilflow_assets.loopback import free_port
from facilflow_assets.resource_map import build_resources
from facilflow_assets.scope import ModelScope
from facilflow_assets.serving.rollout import DeploymentConfig, app_name, roll_out
from facilflow_assets.tenants import DEFAULT_TENANT
from facilflow_assets.use_case import load_use_case, use_case_path
from resources import ServingResource

SCOPE = ModelScope(DEFAULT_TENANT, "flight_delay")  # the endpoint `make demo` deploys
USE_CASE = load_use_case(use_case_path(SCOPE.use_case))
CONCURRENCY = 8
SECONDS = 60.0
KILL_SETTLES_S = 0.2  # an answer read just after the kill may have left just before it
RECOVERY_TIMEOUT_S = 120.0


class Load:
    """CONCURRENCY client threads: per request, when it ended, its status and latency."""

    def __init__(self, url: str, body: dict):
        self.url, self.body = url, body
        self.records: list[tuple[float, int, float]] = []  # (ended, status, ms); 0: no answer
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client) for _ in range(CONCURRENCY)]

    def _client(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                status = session.post(self.url, json=self.body, timeout=30).status_code
            except requests.RequestException:
                status = 0
            ended = time.perf_counter()
            self.records.append((ended, status, (ended - started) * 1000))

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def answered_since(self, moment: float, timeout: float) -> None:
        """Wait until a request sent after `moment` is answered 200 (at most `timeout`)."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if any(status == 200 and sent >= moment for sent, _, status in self._timeline()):
                return
            time.sleep(0.05)
        raise TimeoutError(f"the endpoint answered nothing for {timeout:.0f} s after the kill")

    def failed(self, sent_from: float, sent_until: float, ended_after: float = 0.0):
        """The non-2xx answers to requests sent between `sent_from` and `sent_until` (and
        ended after `ended_after`), by status (0: no answer)."""
        failed = Counter(
            str(status)
            for sent, ended, status in self._timeline()
            if sent_from <= sent < sent_until and ended > ended_after and not 200 <= status < 300
        )
        return dict(sorted(failed.items()))

    def _timeline(self) -> list[tuple[float, float, int]]:
        """(sent, ended, status) of every request so far."""
        return [(ended - ms / 1000, ended, status) for ended, status, ms in list(self.records)]


def replacement_running(serving: ServingResource, killed: int, timeout: float) -> float:
    """When Ray Serve reports a replica other than the `killed` one running. Until then the
    proxy may still route requests to the dead one, where they wait until their timeout."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        running = serving.running_replica_pids(app_name(SCOPE))
        if running and killed not in running:
            return time.perf_counter()
        time.sleep(0.2)
    raise TimeoutError(f"Ray Serve replaced no killed replica within {timeout:.0f} s")


def under_load(resources, seconds: float) -> tuple[Load, tuple[float, ...], str]:
    """Deploy, then load the endpoint for `seconds`: kill its replica a quarter of the way
    in, roll out an update half-way, or once the killed replica is replaced and the
    endpoint answers again if that is later (so a short run does not count the kill's
    failures as the rollout's). Returns the load,
    the phases' times (start, kill, rollout start and end, end) and what was rolled out."""

    def rollout(config: DeploymentConfig):
        parts = (resources.storage, resources.mlflow, resources.feast, resources.serving)
        return roll_out(config, USE_CASE, SCOPE, *parts, resources.events, log=lambda _: None)

    served = rollout(DeploymentConfig())
    try:
        resources.mlflow.client().get_model_version_by_alias(SCOPE.registered_model_name, "staging")
        update, rolled_out = DeploymentConfig(challenger_share=0.5), "staging_as_challenger"
    except MlflowException:
        update, rolled_out = DeploymentConfig(), "production_again"
    load = Load(served.url, served.sample)
    started = time.perf_counter()
    load.start()
    try:
        time.sleep(seconds / 4)
        [replica] = resources.serving.running_replica_pids(app_name(SCOPE))
        killed = time.perf_counter()
        os.kill(replica, signal.SIGKILL)
        replaced = replacement_running(resources.serving, replica, RECOVERY_TIMEOUT_S)
        load.answered_since(replaced, RECOVERY_TIMEOUT_S)
        time.sleep(max(0.0, started + seconds / 2 - time.perf_counter()))
        rollout_started = time.perf_counter()
        rollout(update)
        rollout_ended = time.perf_counter()
        time.sleep(max(0.0, started + seconds - time.perf_counter()))
    finally:
        load.stop()
    phases = (started, killed, rollout_started, rollout_ended, time.perf_counter())
    return load, phases, rolled_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=LOCAL_HOME, help="working directory")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="of steady load")
    arguments = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="serve-faults-"))
    home = shutil.copytree(arguments.home.resolve(), work / "facilflow")
    configured = build_resources(Environment.LOCAL, home=home)
    serving = ServingResource(
        http_port=free_port(), state_dir=str(work / "serve"), request_log_dir=str(work / "req")
    )
    keys = ("storage", "mlflow", "feast", "events")
    try:
        with dg.build_resources({**{k: configured[k] for k in keys}, "serving": serving}) as built:
            load, phases, rolled_out = under_load(built, arguments.seconds)
    finally:
        serving.stop_local_cluster()
        shutil.rmtree(work, ignore_errors=True)
    started, killed, rollout_started, rollout_ended, ended = phases
    answered = [(at, ms) for at, status, ms in load.records if status == 200]
    answered_after_kill = [at for at, _ in answered if at > killed + KILL_SETTLES_S]
    p50, p95, p99 = np.percentile([ms for _, ms in answered], [50, 95, 99])
    # A request counts where it was sent: one sent just after the kill that hangs until its
    # timeout is the kill's failure, even if it ends during the rollout.
    during_rollout = load.failed(rollout_started, rollout_ended)
    after_kill = load.failed(started, rollout_started, ended_after=killed)
    print(
        json.dumps(
            {
                "cores": os.cpu_count(),
                "concurrency": CONCURRENCY,
                "seconds": round(ended - started, 1),
                "requests": len(load.records),
                "rps": round(len(answered) / (ended - started), 1),
                "p50_ms": round(float(p50), 2),
                "p95_ms": round(float(p95), 2),
                "p99_ms": round(float(p99), 2),
                "rolled_out": rolled_out,
                "rollout_s": round(rollout_ended - rollout_started, 1),
                "non_2xx_during_rollout": sum(during_rollout.values()),
                "non_2xx_during_rollout_by_status": during_rollout,
                "recovery_s": round(min(answered_after_kill) - killed, 2)
                if answered_after_kill
                else None,
                "failed_after_kill": sum(after_kill.values()),
                "failed_after_kill_by_status": after_kill,
                "non_2xx_total": sum(1 for _, status, _ in load.records if status != 200),
            }
        )
    )


if __name__ == "__main__":
    main()
