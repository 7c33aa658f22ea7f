"""A real `mlflow server` for tests: PostgreSQL backend on 127.0.0.1:5432, served artifacts."""

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import requests

from facilflow_assets.loopback import free_port, stop_process_group
from tests.tls import TlsFiles

POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}
STARTUP_TIMEOUT_S = 120


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A database of its own, dropped afterwards; yields its SQLAlchemy URI."""
    name = f"facilflow_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(**POSTGRES)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@contextlib.contextmanager
def mlflow_server(
    artifacts: Path,
    app_name: str | None = None,
    env: dict[str, str] | None = None,
    backend: str | None = None,
    static_prefix: str = "",
    tls: TlsFiles | None = None,
) -> Iterator[str]:
    """An `mlflow server` process on a free loopback port (running the app `app_name`,
    with `env` added to its environment) over the PostgreSQL database `backend`, or one of
    its own, its routes under `static_prefix`, speaking TLS with `tls`' certificate;
    yields its URL (prefix included)."""
    with contextlib.ExitStack() as stack:
        backend = backend or stack.enter_context(postgres_database())
        port = free_port()
        log = (artifacts.parent / "mlflow-server.log").open("w")
        # Its own session, so stopping it stops every worker it started.
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--backend-store-uri",
                backend,
                "--artifacts-destination",
                str(artifacts),
                "--serve-artifacts",
                *(["--app-name", app_name] if app_name else []),
                *(["--static-prefix", static_prefix] if static_prefix else []),
                "--uvicorn-opts",
                _uvicorn_options(tls),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})},
        )
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}{static_prefix}"
        try:
            log_path = artifacts.parent / "mlflow-server.log"
            _wait_until_healthy(url, process, log_path, tls.ca if tls else None)
            yield url
        finally:
            stop_process_group(process)
            log.close()


def _uvicorn_options(tls: TlsFiles | None) -> str:
    # Stopping waits for clients' idle keep-alive connections only briefly (over TLS it
    # would otherwise wait for them to time out).
    options = "--timeout-graceful-shutdown 2"
    if tls:
        options += f" --ssl-keyfile {tls.key} --ssl-certfile {tls.certificate}"
    return options


def _wait_until_healthy(
    url: str, process: subprocess.Popen, log: Path, ca: Path | None = None
) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited early:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/health", timeout=2, verify=str(ca) if ca else True).ok:
                return
        time.sleep(0.5)
    raise TimeoutError(
        f"mlflow server not healthy after {STARTUP_TIMEOUT_S} s:\n{log.read_text()[-3000:]}"
    )
