"""What the endpoint tests drive it with: a client loop in a thread, and `facilflow` commands
in processes of their own."""

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import requests

CLI = str(Path(sys.executable).parent / "facilflow")


class Probe:
    """A client loop (`post` of the sample every INTERVAL_S, or as soon as the last answer
    came if slower) in a thread of this process: every answer's version and time, every
    failure and its time. Steady, not a load: the processes it watches need the CPUs."""

    INTERVAL_S = 0.05

    def __init__(self, deployment):
        self.deployment = deployment
        self.versions: Counter[str] = Counter()
        self.failures: list[tuple[float, object]] = []
        self.answered_at: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop)

    def _loop(self) -> None:
        session = requests.Session()
        while not self._stop.wait(self.INTERVAL_S):
            try:
                response = self.deployment.post(self.deployment.sample, session=session)
            except requests.RequestException as error:
                self.failures.append((time.monotonic(), repr(error)))
                continue
            if response.status_code == 200:
                self.versions[response.json()["model_version"]] += 1
                self.answered_at.append(time.monotonic())
            else:
                self.failures.append((time.monotonic(), response.status_code))

    def __enter__(self) -> "Probe":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def facilflow(home: Path, port: int, *args: str) -> subprocess.CompletedProcess:
    """A `facilflow` command in a process of its own, on `home`'s endpoint at `port`."""
    return subprocess.run(
        [CLI, "--home", str(home), *args],
        env={**os.environ, "FACILFLOW_SERVE_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=600,
    )
