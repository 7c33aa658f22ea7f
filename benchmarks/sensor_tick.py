"""How long an approval_sensor evaluation takes on a registry of 1,000 versions.

A local MLflow store gets one registered model with 1,000 versions, 20 of which carry a
pending request (undecided, so a tick changes nothing and can be repeated). A whole
sensor evaluation is timed; so is its lookup of pending requests (a tag-filtered search)
side by side with the naive peer, listing every version and reading each one's tags.
Ends with one JSON line.
"""

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
from sensors.approval import approval_sensor

VERSIONS = 1_000
PENDING = 20
TICKS = 7


def fill_registry(resources: dict) -> None:
    tracking, name = resources["mlflow"], resources["tenant"].registered_model_name
    client = tracking.client()
    run = client.create_run(tracking.ensure_experiment().experiment_id)
    client.create_registered_model(name)
    pending_every = VERSIONS // PENDING
    for number in range(1, VERSIONS + 1):
        tags = {}
        if number % pending_every == 0:
            tags = {
                REQUEST_STAGE: "Production",
                REQUEST_BY: "carol",
                REQUEST_STATUS: RequestStatus.PENDING.value,
            }
        client.create_model_version(
            name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id, tags=tags
        )


def tick(resources: dict) -> float:
    needed = {k: resources[k] for k in ("mlflow", "tenant", "governance", "events")}
    with dg.build_sensor_context(resources=needed) as context:
        started = time.perf_counter()
        result = approval_sensor(context)
        elapsed = time.perf_counter() - started
    assert result.run_requests == []
    return elapsed


def tag_search(resources: dict) -> float:
    client = resources["mlflow"].client()
    started = time.perf_counter()
    pending = pending_requests(client, resources["tenant"].registered_model_name)
    elapsed = time.perf_counter() - started
    assert len(pending) == PENDING, len(pending)
    return elapsed


def naive_scan(resources: dict) -> float:
    client = resources["mlflow"].client()
    name = resources["tenant"].registered_model_name
    started = time.perf_counter()
    pending = [
        version
        for version in client.search_model_versions(f"name = '{name}'", max_results=10_000)
        if version.tags.get(REQUEST_STATUS) == RequestStatus.PENDING
    ]
    elapsed = time.perf_counter() - started
    assert len(pending) == PENDING, len(pending)
    return elapsed


def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        resources = build_resources(Environment.LOCAL, home=Path(home))
        started = time.perf_counter()
        fill_registry(resources)
        print(f"{VERSIONS} versions, {PENDING} pending, in {time.perf_counter() - started:.1f} s")
        tick(resources)  # warm: the audit experiment and the store's connection pool
        ticks = [tick(resources) for _ in range(TICKS)]
        searches = [tag_search(resources) for _ in range(TICKS)]
        scans = [naive_scan(resources) for _ in range(TICKS)]
    print(f"sensor ticks: {[round(t, 3) for t in ticks]}")
    print(f"tag searches: {[round(t, 3) for t in searches]}")
    print(f"naive scans:  {[round(t, 3) for t in scans]}")
    print(
        json.dumps(
            {
                "versions": VERSIONS,
                "pending_requests": PENDING,
                "tick_s": round(statistics.median(ticks), 3),
                "tick_max_s": round(max(ticks), 3),
                "tag_search_s": round(statistics.median(searches), 3),
                "naive_scan_s": round(statistics.median(scans), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
