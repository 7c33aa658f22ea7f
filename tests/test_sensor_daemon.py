"""The approval sensor ticked by a real `dagster-daemon` over workspace.yaml's demo and acme
locations: one decision, one run, even when the sensor's cursor is lost
after the launch (as if the daemon restarted before saving it). acme runs the same use
case under the same job and sensor names, and launches nothing for demo's approval."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from facilflow_assets.environment import PROJECT_ROOT
from facilflow_assets.governance.requests import Decision, decide, request_production
from facilflow_assets.governance.stages import Stage
from tests.daemon import start_daemon, wait_for, workspace_of
from tests.mlflow_server import stop_process_group
from tests.test_governance import APPROVERS, MODEL, SCOPE, Registry

pytestmark = pytest.mark.slow

TICK_TIMEOUT_S = 180
LOCATION = SCOPE.tenant  # the demo tenant's code location
SENSOR = SCOPE.definition_name("approval_sensor")  # flight_delay_approval_sensor
PROMOTION_JOB = SCOPE.definition_name("promotion_job")
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


def _promotion_runs(instance: dg.DagsterInstance) -> list:
    """Every tenant's flight_delay promotion runs: the job has that name in each location."""
    return instance.get_runs(dg.RunsFilter(job_name=PROMOTION_JOB))


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
    both = workspace_of({LOCATION, "acme"}, tmp_path / "workspace.yaml")
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:

        def state(location: str = LOCATION):  # acme's sensor has the same name
            found = [
                s
                for s in instance.all_instigator_state()
                if s.name == SENSOR and s.origin.get_selector().location_name == location
            ]
            return found[0] if found else None

        def ticks(location: str = LOCATION) -> list:  # the sensor runs by default
            sensor = state(location)
            if sensor is None:
                return []
            return instance.get_ticks(sensor.instigator_origin_id, sensor.selector_id)

        daemon = start_daemon(env, log, both)
        try:
            [run] = wait_for(lambda: _promotion_runs(instance), TICK_TIMEOUT_S, log)
        finally:
            stop_process_group(daemon)
        assert run.tags["dagster/sensor_name"] == SENSOR
        assert run.remote_job_origin.location_name == LOCATION
        assert (run.tags["facilflow/tenant"], run.tags["facilflow/use_case"]) == (
            "demo",
            "flight_delay",
        )
        assert (run.tags["facilflow/model"], run.tags["facilflow/version"]) == (MODEL, version)
        # The cursor is lost, as if the daemon had died between the launch and saving it.
        # The CLI names the same sensor (location, repository and name) in one location.
        demo = workspace_of({LOCATION}, tmp_path / "demo-workspace.yaml")
        _dagster("sensor", "cursor", SENSOR, "--delete", workspace=demo, env=env)
        assert state().instigator_data.cursor is None
        before = len(ticks())
        daemon = start_daemon(env, log, both)
        try:
            # The approval is seen again; the tick skips it for its run key. acme's sensor
            # has ticked too, over its own model.
            wait_for(
                lambda: (
                    any(t.status.value == "SKIPPED" for t in ticks()[: len(ticks()) - before])
                    and ticks("acme")
                ),
                TICK_TIMEOUT_S,
                log,
            )
        finally:
            stop_process_group(daemon)
        assert len(_promotion_runs(instance)) == 1


def _dagster(*args: str, workspace: Path, env: dict[str, str]) -> None:
    subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), *args, "-w", str(workspace)],
        cwd=PROJECT_ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
