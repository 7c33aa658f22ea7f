"""A real `dagster-daemon` over workspace.yaml's locations, as `make dev` runs it, for the
sensor tests."""

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import yaml

from facilflow_assets.environment import PROJECT_ROOT

T = TypeVar("T")


def workspace_of(locations: set[str], path: Path) -> Path:
    """workspace.yaml's entries for `locations` alone, written to `path`: the same locations
    (name, module and attribute), without starting the others' code servers."""
    workspace = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())
    entries = [
        e for e in workspace["load_from"] if e["python_module"]["location_name"] in locations
    ]
    assert {e["python_module"]["location_name"] for e in entries} == locations, entries
    path.write_text(yaml.safe_dump({"load_from": entries}))
    return path


def start_daemon(env: dict[str, str], log: Path, workspace: Path) -> subprocess.Popen:
    """`dagster-daemon run` over `workspace` in a session of its own (stop it with
    stop_process_group): its code servers and the runs they launch go with it."""
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(workspace)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_for(condition: Callable[[], T], timeout_s: float, log: Path) -> T:
    """`condition`'s first truthy value, polled each second; the daemon's log on a timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(1)
    raise TimeoutError(f"daemon did not get there in {timeout_s} s:\n{log.read_text()[-3000:]}")
