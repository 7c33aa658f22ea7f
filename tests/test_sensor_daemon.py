"""approval_sensor ticked by a real `dagster-daemon`: one decision, one run, even when the
sensor's cursor is lost after the launch (as if the daemon restarted before saving it)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from facilflow_assets.environment import PROJECT_ROOT
from facilflow_assets.governance.requests import Decision, decide, request_production
from facilflow_assets.registry.stages import Stage
from tests.mlflow_server import stop_process_group
from tests.test_governance import APPROVERS, MODEL, Registry

TICK_TIMEOUT_S = 180
# Runs wait in the queue and never start: the request stays pending, so every tick sees
# the same approval again, and only the run key stands between it and a second launch.
DAGSTER_YAML = """
telemetry:
  enabled: false
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 0
"""


def _daemon(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _promotion_runs(instance: dg.DagsterInstance) -> list:
    return instance.get_runs(dg.RunsFilter(job_name="promotion_job"))


def _wait(condition, timeout_s: float, log: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(1)
    raise TimeoutError(f"daemon did not get there in {timeout_s} s:\n{log.read_text()[-3000:]}")


def test_a_daemon_tick_launches_one_promotion_and_a_lost_cursor_no_second(tmp_path):
    facilflow_home, dagster_home = tmp_path / "facilflow", tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(DAGSTER_YAML)
    registry = Registry(facilflow_home)
    registry.add_version(stage=Stage.PRODUCTION)
    version = registry.add_version()
    request_production(registry.client, registry.audit, MODEL, version, "carol", "better")
    decide(
        registry.client, registry.audit, MODEL, version, "dave", Decision.APPROVED, "ok", APPROVERS
    )

    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "FACILFLOW_HOME": str(facilflow_home)}
    log = tmp_path / "daemon.log"
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:

        def ticks() -> list:  # approval_sensor runs by default: no start needed
            [state] = [s for s in instance.all_instigator_state() if s.name == "approval_sensor"]
            return instance.get_ticks(state.instigator_origin_id, state.selector_id)

        daemon = _daemon(env, log)
        try:
            [run] = _wait(lambda: _promotion_runs(instance), TICK_TIMEOUT_S, log)
        finally:
            stop_process_group(daemon)
        assert run.tags["dagster/sensor_name"] == "approval_sensor"
        assert run.tags["facilflow/version"] == version
        # The cursor is lost, as if the daemon had died between the launch and saving it.
        _dagster("sensor", "cursor", "approval_sensor", "--delete", env=env)
        before = len(ticks())
        daemon = _daemon(env, log)
        try:
            # The approval is seen again; the tick skips it for its run key.
            _wait(
                lambda: any(t.status.value == "SKIPPED" for t in ticks()[: len(ticks()) - before]),
                TICK_TIMEOUT_S,
                log,
            )
        finally:
            stop_process_group(daemon)
        assert len(_promotion_runs(instance)) == 1


def _dagster(*args: str, env: dict[str, str]) -> None:
    subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), *args, "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT, env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
