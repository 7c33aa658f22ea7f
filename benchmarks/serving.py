"""The real-time endpoint against `mlflow models serve` of the same model, on this machine.

  facilflow     - the prediction endpoint on Ray Serve (HAProxy ingress, one replica), each
                  request carrying entity keys: the features are read from the Feast online
                  store, then the model predicts;
  mlflow_serve  - `mlflow models serve` of the same version (its default server), each
                  request carrying the 39 feature values already looked up.
Both run in this machine's 2 cores beside the client. At concurrency 1: 100 warm-up
requests, then 1,000 timed one after another. At concurrency 8: eight threads, each with a
keep-alive session, for 10 s. Latency is the client's, request sent to answer read.
`--warm-up`, `--requests` and `--seconds` make a smoke run.
Run `make demo` first (or name its working directory with `--home`). Ends with one JSON line.
"""

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

import dagster as dg
import numpy as np
import requests

from facilflow_assets.environment import LOCAL_HOME, Environment
from facilflow_assets.features.target_rows import latest_keys
from facilflow_assets.loopback import free_port
from facilflow_assets.resource_map import build_resources
from facilflow_assets.scope import ModelScope
from facilflow_assets.serving.deployment_assets import build_deployment_assets
from facilflow_assets.serving.models import PRODUCTION, ModelRef, load, resolve
from facilflow_assets.tenants import DEFAULT_TENANT
from facilflow_assets.use_case import load_use_case, use_case_path
from resources import ServingResource

SCOPE = ModelScope(DEFAULT_TENANT, "flight_delay")  # the endpoint `make demo` deploys
USE_CASE = load_use_case(use_case_path(SCOPE.use_case))

WARM_UP = 100
SEQUENTIAL = 1000
CONCURRENCY = 8
CONCURRENT_SECONDS = 10.0


def latencies(url: str, body: dict, count: int, session: requests.Session) -> list[float]:
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        response = session.post(url, json=body, timeout=30)
        timings.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return timings


def figures(timings: list[float], seconds: float) -> dict[str, float]:
    p50, p95, p99 = np.percentile(timings, [50, 95, 99])
    return {
        "p50_ms": round(float(p50), 2),
        "p95_ms": round(float(p95), 2),
        "p99_ms": round(float(p99), 2),
        "rps": round(len(timings) / seconds, 1),
    }


class Traffic(NamedTuple):
    """What each server is sent: untimed requests, then timed ones one after another, then
    CONCURRENCY threads' requests for a while."""

    warm_up: int
    sequential: int
    concurrent_seconds: float


def measure(url: str, body: dict, traffic: Traffic) -> dict[str, dict[str, float]]:
    session = requests.Session()
    latencies(url, body, traffic.warm_up, session)
    started = time.perf_counter()
    sequential = latencies(url, body, traffic.sequential, session)
    c1 = figures(sequential, time.perf_counter() - started)

    results: list[list[float]] = [[] for _ in range(CONCURRENCY)]
    deadline = time.perf_counter() + traffic.concurrent_seconds

    def worker(timings: list[float]) -> None:
        own = requests.Session()
        while time.perf_counter() < deadline:
            timings.extend(latencies(url, body, 1, own))

    threads = [threading.Thread(target=worker, args=(r,)) for r in results]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    c8 = figures([t for r in results for t in r], time.perf_counter() - started)
    return {"c1": c1, f"c{CONCURRENCY}": c8}


@contextlib.contextmanager
def mlflow_serve(ref: ModelRef, tracking_uri: str):
    port = free_port()
    log = Path(tempfile.mkdtemp()) / "mlflow-serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "models",
                "serve",
                "-m",
                ref.uri,
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Its server runs `uvicorn` by name: this environment's scripts go first on PATH.
            # The registry is the tracking store's, whatever MLFLOW_REGISTRY_URI said before.
            env={
                **os.environ,
                "MLFLOW_TRACKING_URI": tracking_uri,
                "MLFLOW_REGISTRY_URI": tracking_uri,
                "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            },
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow models serve did not start; see {log}")
            time.sleep(0.5)
        yield f"{url}/invocations"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=LOCAL_HOME, help="working directory")
    parser.add_argument("--warm-up", type=int, default=WARM_UP, help="untimed requests")
    parser.add_argument("--requests", type=int, default=SEQUENTIAL, help="at concurrency 1")
    parser.add_argument(
        "--seconds", type=float, default=CONCURRENT_SECONDS, help=f"at concurrency {CONCURRENCY}"
    )
    arguments = parser.parse_args()
    traffic = Traffic(arguments.warm_up, arguments.requests, arguments.seconds)
    resources = build_resources(Environment.LOCAL, home=arguments.home.resolve())
    state = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    resources["serving"] = ServingResource(
        http_port=free_port(), state_dir=str(state), request_log_dir=str(state / "requests")
    )
    keys = ("storage", "feast", "mlflow")
    with dg.build_resources({key: resources[key] for key in keys}) as built:
        client = built.mlflow.client()
        ref = resolve(client, SCOPE.registered_model_name, PRODUCTION)
        model = load(client, ref)
        sample = latest_keys(built.storage, USE_CASE)
        store = built.feast.feature_store(SCOPE)
        online = store.get_online_features(
            features=store.get_feature_service(USE_CASE.feature_service),
            entity_rows=[sample],
            full_feature_names=True,
        ).to_dict()
        tracking_uri = built.mlflow.tracking_uri
    row = [online[name][0] for name in model.input_names]
    mlflow_body = {"dataframe_split": {"columns": model.input_names, "data": [row]}}
    try:
        [prediction_endpoint] = build_deployment_assets(USE_CASE, SCOPE)
        result = dg.materialize([prediction_endpoint], resources=resources)
        [event] = result.get_asset_materialization_events()
        url = event.event_specific_data.materialization.metadata["url"].value
        facilflow = measure(url, sample, traffic)
    finally:
        resources["serving"].stop_local_cluster()
    with mlflow_serve(ref, tracking_uri) as url:
        peer = measure(url, mlflow_body, traffic)
    print(
        json.dumps(
            {
                "model": ref.uri,
                "cores": os.cpu_count(),
                "requests_c1": traffic.sequential,
                "seconds_c8": traffic.concurrent_seconds,
                "facilflow": facilflow,
                "mlflow_serve": peer,
            }
        )
    )


if __name__ == "__main__":
    main()
