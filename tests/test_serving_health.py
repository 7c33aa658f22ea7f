"""Serving health from the request log, as the endpoint writes it: per-version latency and
failures against the SLA, the check, and SERVING_SLA_BREACHED in the outbox. The records
are written through the endpoint's own RequestLog; no endpoint runs here (the endpoint's
logging itself is tested on a real deployment in test_serving)."""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl
import pytest

from facilflow_assets.environment import Environment
from facilflow_assets.monitoring.health_assets import (
    WITHIN_SLA_CHECK,
    build_serving_health_assets,
)
from facilflow_assets.monitoring.serving_health import (
    ERRORS,
    LATENCY,
    THROUGHPUT,
    HealthThresholds,
    per_minute,
    requests_between,
    version_health,
)
from facilflow_assets.resource_map import build_resources
from facilflow_assets.scope import ModelScope
from facilflow_assets.serving.request_log import RequestLog
from facilflow_assets.use_case import SlaSpec
from tests.lifecycle import lifecycle

THRESHOLDS = HealthThresholds(p95_sla_ms=50.0, max_error_rate=0.01, min_requests=20)


SCOPE = ModelScope("demo", "flight_delay")


def _serving_health(tenant: str = "demo") -> dg.AssetsDefinition:
    return lifecycle("flight_delay", tenant).asset("serving_health")


def _record(version: str | None, outcome: str, latency_ms: float, at: datetime) -> dict:
    status = {"ok": 200, "invalid": 422, "error": 500}[outcome]
    return {
        "time": at,
        "request_id": f"{version}-{outcome}-{at.timestamp()}",
        "model": "demo.flight_delay",
        "model_version": version,
        "role": None if version is None else "production" if version == "1" else "challenger",
        "outcome": outcome,
        "status": status,
        "latency_ms": latency_ms,
        "prediction": 0.2 if outcome == "ok" else None,
        "error": None if outcome == "ok" else "failed",
    }


def _traffic(now: datetime) -> list[dict]:
    """Version 1 healthy, 2 failing 2 of 100, 3 slow, 4 barely used; invalid calls, refused
    before a version is chosen, apart."""
    at = [now - timedelta(seconds=s) for s in range(200)]
    records = [_record("1", "ok", 5.0 + i % 10, at[i]) for i in range(100)]
    records += [_record("2", "error" if i < 2 else "ok", 6.0, at[i]) for i in range(100)]
    records += [_record("3", "ok", 80.0 if i % 10 < 2 else 10.0, at[i]) for i in range(40)]
    records += [_record("4", "error", 500.0, at[i]) for i in range(5)]
    records += [_record(None, "invalid", 0.5, at[i]) for i in range(37)]  # the callers' mistake
    records.append(_record("1", "error", 900.0, now - timedelta(hours=3)))  # out of the window
    return records


@pytest.fixture
def logged(tmp_path):
    """The traffic, written through the endpoint's request log into a local home."""
    home = tmp_path / "home"
    resources = build_resources(Environment.LOCAL, home=home)
    log = RequestLog(
        resources["serving"].request_log_path(SCOPE),
        ["weather_hourly__temperature_f"],
        flush_seconds=0.1,
    )
    now = datetime.now(UTC)
    for record in _traffic(now):
        log.append(record)
    log.close()
    return resources, now


def test_each_version_is_judged_on_its_own_requests(logged):
    resources, now = logged
    root = resources["serving"].request_log_path(SCOPE)
    window = requests_between(root, now - timedelta(hours=1), now + timedelta(seconds=1))
    health = {h.model_version: h for h in version_health(window, THRESHOLDS, 3600)}
    assert list(health) == ["1", "2", "3", "4"]
    healthy, failing, slow, barely_used = (health[v] for v in "1234")
    assert (healthy.requests, healthy.errors) == (100, 0)
    assert healthy.breaches == () and healthy.p95_ms < 50
    assert failing.error_rate == pytest.approx(0.02) and failing.breaches == (ERRORS,)
    assert slow.p95_ms == pytest.approx(80.0) and slow.breaches == (LATENCY,)
    assert not barely_used.judged and barely_used.breaches == ()
    assert healthy.rps == pytest.approx(100 / 3600)


def test_a_throughput_floor_applies_only_when_configured_and_to_every_version(logged):
    resources, now = logged
    root = resources["serving"].request_log_path(SCOPE)
    window = requests_between(root, now - timedelta(hours=1), now + timedelta(seconds=1))
    floor = HealthThresholds(p95_sla_ms=1000.0, max_error_rate=1.0, min_requests=20, min_rps=0.02)
    health = {h.model_version: h for h in version_health(window, floor, 3600)}
    # 72 requests an hour: versions 1 and 2 served 100, 3 served 40, 4 five (too few to
    # judge its latency, not too few to be under the floor).
    assert {v: h.breaches for v, h in health.items()} == {
        "1": (),
        "2": (),
        "3": (THROUGHPUT,),
        "4": (THROUGHPUT,),
    }
    minutes = per_minute(window)
    version_1 = minutes.filter(pl.col("model_version") == "1")
    assert round(version_1["rps"].sum() * 60) == 100  # every request in some minute
    assert (version_1["p95_ms"] >= version_1["p50_ms"]).all()


def test_the_floor_fails_the_check_and_alerts_when_traffic_drops(logged):
    resources, _ = logged
    config = {"min_rps": 0.02, "p95_sla_ms": 1000.0, "max_error_rate": 1.0}
    result = dg.materialize(
        [_serving_health()],
        resources=resources,
        run_config={"ops": {_serving_health().op.name: {"config": config}}},
    )
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and check.description == "version 3: throughput; version 4: throughput"
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["min_rps"].value == 0.02 and "rps" in metadata["per_minute"].value
    alerts = [json.loads(e.body) for e in resources["events"].outbox().waiting(100)]
    assert {a["version"]: a["payload"]["rps"] for a in alerts} == pytest.approx(
        {"3": 40 / 3600, "4": 5 / 3600}
    )
    assert {a["payload"]["min_rps"] for a in alerts} == {0.02}


def test_the_use_case_files_sla_is_the_default_a_run_may_override(logged):
    """A file promising a p95 under 1 s and a floor of 0.02/s: judged so without any run
    config; a run config's SLA replaces it for that run."""
    resources, _ = logged
    flights = lifecycle("flight_delay")
    promising = flights.use_case.model_copy(
        update={"sla": SlaSpec(p95_ms=1000.0, max_error_rate=1.0, min_rps=0.02)}
    )
    [asset] = build_serving_health_assets(promising, flights.scope)
    result = dg.materialize([asset], resources=resources)
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert (metadata["p95_sla_ms"].value, metadata["min_rps"].value) == (1000.0, 0.02)
    overridden = dg.materialize(
        [asset],
        resources=resources,
        run_config={"ops": {asset.op.name: {"config": {"p95_sla_ms": 5.0, "min_rps": 0.01}}}},
    )
    metadata = overridden.get_asset_materialization_events()[0].materialization.metadata
    assert (metadata["p95_sla_ms"].value, metadata["min_rps"].value) == (5.0, 0.01)
    assert metadata["max_error_rate"].value == 1.0  # not overridden: the file's


def test_with_a_floor_a_window_without_any_request_fails_the_check(tmp_path):
    resources = build_resources(Environment.LOCAL, home=tmp_path / "home")
    result = dg.materialize(
        [_serving_health()],
        resources=resources,
        run_config={"ops": {_serving_health().op.name: {"config": {"min_rps": 1.0}}}},
    )
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert "below the throughput floor of 1 per second" in check.description


def test_the_asset_fails_its_check_and_alerts_once_per_breached_version(logged):
    resources, _ = logged
    result = dg.materialize([_serving_health()], resources=resources)
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == WITHIN_SLA_CHECK and not check.passed
    assert check.description == "version 2: errors; version 3: latency"
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["requests"].value == 100 + 100 + 40 + 5 + 37
    assert metadata["invalid_requests"].value == 37
    assert "too few requests" in metadata["versions"].value
    assert metadata["throughput_and_latency"].value.startswith(
        "![throughput and p95 latency per minute](data:image/png"
    )
    assert "min_rps" not in metadata  # no floor unless configured
    waiting = resources["events"].outbox().waiting(100)
    assert [e.event_type for e in waiting] == ["SERVING_SLA_BREACHED"] * 2
    alerts = {event["version"]: event for event in (json.loads(e.body) for e in waiting)}
    assert set(alerts) == {"2", "3"}
    assert alerts["2"]["payload"]["breaches"] == ["errors"]
    assert alerts["3"]["payload"]["p95_ms"] == pytest.approx(80.0)
    assert alerts["3"]["payload"]["p95_sla_ms"] == 50.0
    assert {(e["tenant"], e["use_case"], e["model"]) for e in alerts.values()} == {
        ("demo", "flight_delay", "demo.flight_delay")
    }


def test_another_tenants_endpoint_is_judged_on_its_own_request_log(logged):
    resources, _ = logged
    acme = ModelScope("acme", "flight_delay")
    serving = resources["serving"]
    assert serving.request_log_path(acme) != serving.request_log_path(SCOPE)
    result = dg.materialize([_serving_health("acme")], resources=resources)
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "nothing to judge" in check.description
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["requests"].value == 0
    assert resources["events"].outbox().waiting(100) == []


def test_a_window_without_traffic_warns_that_there_is_nothing_to_judge(tmp_path):
    resources = build_resources(Environment.LOCAL, home=tmp_path / "home")
    result = dg.materialize([_serving_health()], resources=resources)
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "nothing to judge" in check.description
    assert resources["events"].outbox().waiting(100) == []
