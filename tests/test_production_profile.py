"""The whole lifecycle on the production profile: `build_resources(Environment.PROD)` with
every setting from the environment, as deploy/ sets them, pointed at real services here.
It runs the second use case, rain at an airport in the next hour, which is declared in its
file alone, for a tenant of the test's own, in a process of its own: its feature table,
Feast project, model, evaluation, governance, endpoint, batch and drift all come from there.

Dagster's instance storage and the event outbox are PostgreSQL databases of their own, the
MLflow server keeps its store in another, Feast's online store is the real Redis, artifacts
and checkpoints go to an S3-compatible endpoint (moto's server on loopback), events to the
Kafka-compatible broker, and training, tuning and serving run on a Ray cluster joined by
address. The MLflow server runs without the governance app here (its rules are tested on
their own in test_governance_server.py)."""

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import boto3
import dagster as dg
import polars as pl
import psycopg2
import pytest
import redis
import yaml
from moto.server import ThreadedMotoServer

from facilflow_assets.demo.run import SUMMARY_FILE
from facilflow_assets.environment import PROJECT_ROOT, Environment
from facilflow_assets.events.local_broker import LocalBroker
from facilflow_assets.events.reader import EventReader
from facilflow_assets.resource_map import build_resources
from facilflow_assets.scope import ModelScope
from resources import ServingResource
from resources.ray_cluster import LOCAL_RAY_ENV
from tests.mlflow_server import free_port, mlflow_server, postgres_database

pytestmark = pytest.mark.slow

ARTIFACTS, CHECKPOINTS = "ml-artifacts", "ml-checkpoints"
AWS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}
LIFECYCLE_EVENTS = 11  # two trainings, the promotion, the deployment and the winter drift
USE_CASE = "airport_rain"


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    """The demo's lifecycle of the second use case on the production profile; yields what
    the checks need."""
    root = tmp_path_factory.mktemp("production")
    home = root / "facilflow"
    tenant = f"e2e_{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as cleanup:  # each stop registered as its start succeeds
        s3_port = free_port()
        s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port)
        s3.start()
        cleanup.callback(s3.stop)
        s3_url = f"http://127.0.0.1:{s3_port}"
        bucket_client = boto3.client("s3", endpoint_url=s3_url, **_boto_credentials())
        for bucket in (ARTIFACTS, CHECKPOINTS):
            bucket_client.create_bucket(Bucket=bucket)
        env = cleanup.enter_context(pytest.MonkeyPatch.context())
        services = cleanup.enter_context(_services(root, s3_url))
        settings = {
            **AWS,
            **LOCAL_RAY_ENV,
            "FACILFLOW_ENV": "prod",
            "FACILFLOW_HOME": str(home),
            "FACILFLOW_WAREHOUSE_PATH": str(home / "warehouse.duckdb"),
            "FACILFLOW_APPROVERS": f"{tenant}=carol,dave",
            "FACILFLOW_RETRAIN_ON_DRIFT": "feature,prediction,quality",
            "FACILFLOW_REDIS_URL": "127.0.0.1:6379",
            "FACILFLOW_OUTBOX_URL": services["outbox"],
            "KAFKA_BOOTSTRAP_SERVERS": services["kafka"],
            "MLFLOW_TRACKING_URI": services["mlflow"],
            "FACILFLOW_ARTIFACT_ROOT": f"s3://{ARTIFACTS}/facilflow",
            "FACILFLOW_CHECKPOINT_ROOT": f"s3://{CHECKPOINTS}/facilflow",
            "MLFLOW_S3_ENDPOINT_URL": s3_url,
            "FACILFLOW_SERVE_HOST": "127.0.0.1",
            "FACILFLOW_SERVE_PORT": str(free_port()),
            "FACILFLOW_REQUEST_LOG_DIR": str(home / "requests"),
        }
        for name, value in settings.items():
            env.setenv(name, value)
        # The cluster's processes start with these settings, as the RayCluster's pods do.
        head = ServingResource(state_dir=str(root / "ray-head"), request_log_dir=str(root))
        cleanup.callback(head.stop_local_cluster)
        address = head.cluster_address()
        env.setenv("FACILFLOW_RAY_ADDRESS", address)
        env.setenv("FACILFLOW_SERVE_RAY_ADDRESS", address)
        cleanup.callback(_remove_online_keys, build_resources(Environment.PROD)["feast"], tenant)
        dagster_home = root / "dagster_home"
        dagster_home.mkdir()
        storage = {"postgres": {"postgres_url": services["dagster"]}}
        (dagster_home / "dagster.yaml").write_text(
            yaml.safe_dump({"storage": storage, "telemetry": {"enabled": False}})
        )
        demo = subprocess.run(
            [sys.executable, "-m", "tests.demo_process", str(home), tenant, USE_CASE],
            env={**os.environ, "DAGSTER_HOME": str(dagster_home), "PYTHONWARNINGS": "ignore"},
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert demo.returncode == 0, demo.stderr[-4000:]
        instance = cleanup.enter_context(dg.DagsterInstance.from_config(str(dagster_home)))
        yield {
            "summary": json.loads((home / SUMMARY_FILE).read_text()),
            "home": home,
            "instance": instance,
            "services": services,
            "s3": bucket_client,
            "tenant": tenant,
        }


def _remove_online_keys(feast, tenant: str) -> None:
    """The tenant's keys in the shared Redis."""
    with dg.build_resources({"feast": feast}) as built:
        built.feast.feature_store(ModelScope(tenant, USE_CASE)).teardown()


@contextlib.contextmanager
def _services(root, s3_url: str) -> Iterator[dict[str, str]]:
    """PostgreSQL databases for Dagster, MLflow and the outbox, the MLflow server, and the
    broker, all stopped (and dropped) on leaving."""
    with (
        postgres_database() as dagster_store,
        postgres_database() as outbox,
        postgres_database() as mlflow_store,
        mlflow_server(
            root / "served-artifacts",
            backend=mlflow_store,
            env={**AWS, "MLFLOW_S3_ENDPOINT_URL": s3_url},
        ) as mlflow_url,
        LocalBroker(root / "broker.log") as broker,
    ):
        yield {
            "dagster": dagster_store,
            "outbox": outbox,
            "mlflow_store": mlflow_store,
            "mlflow": mlflow_url,
            "kafka": broker.bootstrap_servers,
        }


def _boto_credentials() -> dict[str, str]:
    return {
        "region_name": AWS["AWS_DEFAULT_REGION"],
        "aws_access_key_id": AWS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS["AWS_SECRET_ACCESS_KEY"],
    }


def _rows(database_url: str, query: str, *params) -> list[tuple]:
    with contextlib.closing(psycopg2.connect(database_url)) as connection:
        with connection.cursor() as cursor:
            cursor.execute(query, params)
            return cursor.fetchall()


def _keys(client, bucket: str, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_the_lifecycle_reaches_production_serves_and_monitors_on_the_production_profile(
    production,
):
    summary = production["summary"]
    assert all(s["checks_failed"] == 0 for s in summary["assets"]), summary["assets"]
    model = summary["model"]
    assert model["passed"] and model["version"] == "1"
    assert model["baseline"] == "persistence rate" and model["auc"] > model["baseline_auc"]
    assert summary["governance"]["stage"] == "Production"
    serving = summary["serving"]
    assert [r["status"] for r in serving["requests"]] == [200, 200, 422]
    assert isinstance(serving["requests"][0]["rains_next_hour"], bool)  # the label's name
    assert serving["challenger_version"] == "2"
    assert serving["batch_rows"] == 72  # three airports, 24 hours
    drift = summary["monitoring"]["days"]
    assert not drift["2013-06-15"]["feature_drift"] and drift["2013-01-15"]["feature_drift"]
    assert summary["monitoring"]["serving_health"]["requests"] >= serving["burst"]


def test_the_second_use_case_builds_only_its_own_tables_and_feature_service(production):
    summary, home = production["summary"], production["home"]
    prefix = f"{production['tenant']}/{USE_CASE}/features/"
    features = {a["asset"] for a in summary["assets"] if a["asset"].startswith(prefix)}
    assert features == {
        prefix + name
        for name in ("airport_weather", "feast_registry", "online_store", "training_set")
    }
    files = home / "tenants" / production["tenant"] / USE_CASE
    assert sorted(p.name for p in (files / "features").iterdir()) == ["airport_weather.parquet"]
    training = pl.read_parquet(files / "training" / "airport_rain_v1.parquet")
    assert training.height > 25_000 and 0.05 < training["rains_next_hour"].mean() < 0.1
    batch = pl.read_parquet(files / "predictions" / "2013-06-15.parquet")
    assert {"airport_code", "reported_at", "rain_probability"} <= set(batch.columns)


def test_dagster_keeps_its_runs_and_events_in_postgresql(production):
    instance = production["instance"]
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    jobs = dict(_rows(production["services"]["dagster"], "SELECT run_id, pipeline_name FROM runs"))
    assert {r.run_id for r in instance.get_runs()} == set(jobs)
    assert f"{USE_CASE}_promotion_job" in jobs.values() and len(jobs) >= 8
    tags = {
        (run.tags.get("facilflow/tenant"), run.tags.get("facilflow/use_case"))
        for run in instance.get_runs()
        if run.job_name != "warehouse_job"
    }
    assert tags == {(production["tenant"], USE_CASE)}
    [(materializations,)] = _rows(
        production["services"]["dagster"],
        "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'",
    )
    assert materializations >= len(production["summary"]["assets"])


def test_mlflow_keeps_runs_and_versions_in_postgresql_and_artifacts_in_s3(production):
    tenant, store = production["tenant"], production["services"]["mlflow_store"]
    model = f"{tenant}.{USE_CASE}"
    versions = _rows(
        store,
        "SELECT v.version, v.source, t.value FROM model_versions v JOIN model_version_tags t "
        "ON t.name = v.name AND t.version = v.version AND t.key = 'facilflow.stage' "
        "WHERE v.name = %s ORDER BY v.version",
        model,
    )
    assert [(v, stage) for v, _, stage in versions] == [(1, "Production"), (2, "Staging")]
    prefix = f"facilflow/{tenant}/{USE_CASE}/"
    assert all(source.startswith(f"s3://{ARTIFACTS}/{prefix}") for _, source, _ in versions)
    artifacts = _keys(production["s3"], ARTIFACTS, prefix)
    run_id = production["summary"]["model"]["mlflow_run_id"]
    assert any(f"/{run_id}/artifacts/" in key for key in artifacts)
    assert any(key.endswith("MLmodel") for key in artifacts)


def test_tuning_and_training_checkpoints_are_written_to_s3(production):
    prefix = f"facilflow/{production['tenant']}/{USE_CASE}/"
    # Folders are keys too: the prefix itself is one (pyarrow marks each folder it makes).
    folders = {
        key.removeprefix(prefix).split("/")[0]
        for key in _keys(production["s3"], CHECKPOINTS, prefix)
    }
    assert {folder.split("-")[0] for folder in folders if folder} == {"tune", "fit"}


def test_the_tenants_features_are_served_from_redis(production):
    project = f"{production['tenant']}_{USE_CASE}".encode()
    client = redis.Redis(host="127.0.0.1", port=6379)
    assert any(True for _ in client.scan_iter(b"*" + project, count=10_000))


def test_every_event_went_through_the_postgresql_outbox_to_the_broker(production):
    events = production["summary"]["events"]
    assert events["published"] == LIFECYCLE_EVENTS and events["waiting"] == 0
    assert sum(events["on_topic"].values()) == LIFECYCLE_EVENTS
    rows = _rows(
        production["services"]["outbox"],
        "SELECT tenant, published_at IS NOT NULL FROM lifecycle_outbox",
    )
    assert rows == [(production["tenant"], True)] * LIFECYCLE_EVENTS
    with EventReader(events["broker"], events["topic"]) as reader:
        received = list(reader.events(idle_s=1.5))
    assert {(e.tenant, e.use_case) for e in received} == {(production["tenant"], USE_CASE)}
