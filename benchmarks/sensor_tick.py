"""How long an approval_sensor evaluation takes on a registry of 1,000 versions.

A local MLflow store gets one registered model (the demo tenant's flight-delay model) with
1,000 versions, 20 of which carry a pending request (undecided, so a tick changes nothing
and can be repeated). A whole evaluation of the use case's approval sensor is timed; so is
its lookup of pending requests (a tag-filtered search) side by side with the naive peer,
listing every version and reading each one's tags. `--versions` and `--pending` make the
registry smaller (a smoke run) or larger. Ends with one JSON line.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import dagster as dg

from facilflow_assets.environment import Environment
from facilflow_assets.governance.requests import (
    REQUEST_BY,
    REQUEST_STAGE,
    REQUEST_STATUS,
    RequestStatus,
    pending_requests,
)
from facilflow_assets.resource_map import build_resources
from facilflow_assets.scope import ModelScope
from facilflow_assets.tenants import DEFAULT_TENANT
from jobs.promotion import build_promotion_job
from sensors.approval import build_approval_sensor

SCOPE = ModelScope(DEFAULT_TENANT, "flight_delay")
MODEL = SCOPE.registered_model_name
VERSIONS = 1_000
PENDING = 20
TICKS = 7


def fill_registry(resources: dict, versions: int, pending: int) -> None:
    tracking, name = resources["mlflow"], MODEL
    client = tracking.client()
    run = client.create_run(tracking.ensure_experiment(SCOPE).experiment_id)
    client.create_registered_model(name)
    every = versions // pending
    pending_numbers = set(range(every, every * pending + 1, every))  # `pending` of them
    for number in range(1, versions + 1):
        tags = {}
        if number in pending_numbers:
            tags = {
                REQUEST_STAGE: "Production",
                REQUEST_BY: "carol",
                REQUEST_STATUS: RequestStatus.PENDING.value,
            }
        client.create_model_version(
            name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id, tags=tags
        )


def tick(resources: dict, approval_sensor: dg.SensorDefinition) -> float:
    needed = {k: resources[k] for k in ("mlflow", "governance", "events")}
    with dg.build_sensor_context(resources=needed) as context:
        started = time.perf_counter()
        result = approval_sensor(context)
        elapsed = time.perf_counter() - started
    assert result.run_requests == []
    return elapsed


def tag_search(resources: dict, expected: int) -> float:
    client = resources["mlflow"].client()
    started = time.perf_counter()
    pending = pending_requests(client, MODEL)
    elapsed = time.perf_counter() - started
    assert len(pending) == expected, len(pending)
    return elapsed


def naive_scan(resources: dict, expected: int) -> float:
    client = resources["mlflow"].client()
    name = MODEL
    started = time.perf_counter()
    pending = [
        version
        for version in client.search_model_versions(f"name = '{name}'", max_results=10_000)
        if version.tags.get(REQUEST_STATUS) == RequestStatus.PENDING
    ]
    elapsed = time.perf_counter() - started
    assert len(pending) == expected, len(pending)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=VERSIONS, help="versions registered")
    parser.add_argument("--pending", type=int, default=PENDING, help="of them, pending")
    arguments = parser.parse_args()
    versions, pending = arguments.versions, arguments.pending
    if not 0 < pending <= versions:
        parser.error("--pending must be between 1 and --versions")
    with tempfile.TemporaryDirectory() as home:
        resources = build_resources(Environment.LOCAL, home=Path(home))
        started = time.perf_counter()
        fill_registry(resources, versions, pending)
        print(f"{versions} versions, {pending} pending, in {time.perf_counter() - started:.1f} s")
        # The demo tenant's flight-delay sensor, as its code location builds it.
        approval_sensor = build_approval_sensor(SCOPE, build_promotion_job(SCOPE))
        tick(resources, approval_sensor)  # warm: the audit experiment and the connection pool
        ticks = [tick(resources, approval_sensor) for _ in range(TICKS)]
        searches = [tag_search(resources, pending) for _ in range(TICKS)]
        scans = [naive_scan(resources, pending) for _ in range(TICKS)]
    print(f"sensor ticks: {[round(t, 3) for t in ticks]}")
    print(f"tag searches: {[round(t, 3) for t in searches]}")
    print(f"naive scans:  {[round(t, 3) for t in scans]}")
    print(
        json.dumps(
            {
                "versions": versions,
                "pending_requests": pending,
                "tick_s": round(statistics.median(ticks), 3),
                "tick_max_s": round(max(ticks), 3),
                "tag_search_s": round(statistics.median(searches), 3),
                "naive_scan_s": round(statistics.median(scans), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
