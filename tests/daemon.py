"""A real `dagster-daemon` over workspace.yaml, as `make dev` runs it, for the sensor tests."""

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from facilflow_assets.environment import PROJECT_ROOT

T = TypeVar("T")


def start_daemon(env: dict[str, str], log: Path) -> subprocess.Popen:
    """`dagster-daemon run` in a session of its own (stop it with stop_process_group): its
    code servers and the runs they launch go with it."""
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
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
