"""Two tenants side by side on shared stores (one MLflow store, one event outbox), each with
its own experiment, registered model and approvers: one tenant's sensors and jobs never
read or change the other's models, and every event says whose it is."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl
import pytest
import redis
from feast import FeatureStore

from facilflow_assets.environment import Environment
from facilflow_assets.governance.audit import AuditTrail
from facilflow_assets.governance.digest import DIGEST_TAG
from facilflow_assets.governance.requests import (
    DECISION,
    DECISION_BY,
    Decision,
    decide,
    request_production,
)
from facilflow_assets.governance.transitions import SYSTEM_ACTOR, GovernanceError, transition
from facilflow_assets.registry.stages import STAGE_TAG, Stage
from facilflow_assets.resource_map import build_resources
from jobs.promotion import promotion_job
from resources import GovernanceResource, StorageResource, TenantResource
from sensors.approval import approval_sensor
from sensors.redeploy import redeploy_sensor
from tests.redis_feast import redis_feast

# One setting for both tenants, as prod's FACILFLOW_APPROVERS and the server app read it.
APPROVERS = "acme=carol,dave;globex=erin"


class Tenant:
    """A tenant's resources over the shared stores, and its model's versions."""

    def __init__(self, name: str, home):
        self.resources = build_resources(Environment.LOCAL, home=home)  # the shared stores
        self.resources["tenant"] = TenantResource(tenant=name, use_case="flight_delay")
        self.resources["governance"] = GovernanceResource(approvers=APPROVERS)
        self.tenant = self.resources["tenant"]
        self.model = self.tenant.registered_model_name
        self.client = self.resources["mlflow"].client()
        self.audit = AuditTrail(self.client, self.tenant.audit_experiment_name)
        self.client.create_registered_model(self.model)
        self.approvers = self.resources["governance"].approvers_of(self.model)

    def add_version(self, stage: Stage = Stage.STAGING) -> str:
        experiment = self.resources["mlflow"].ensure_experiment()
        run = self.client.create_run(
            experiment.experiment_id, tags={"facilflow.evaluation": "passed"}
        )
        version = self.client.create_model_version(
            self.model,
            source=f"{run.info.artifact_uri}/model",
            run_id=run.info.run_id,
            tags={DIGEST_TAG: f"sha256:{run.info.run_id}"},  # never loaded here
        )
        if stage != Stage.NONE:
            transition(
                self.client, self.audit, self.model, str(version.version), stage, SYSTEM_ACTOR,
                "evaluated",
            )  # fmt: skip
        return str(version.version)

    def versions(self) -> dict[str, dict[str, str]]:
        """Every version's tags: what any change to the model would show."""
        found = self.client.search_model_versions(f"name = '{self.model}'")
        return {str(v.version): dict(v.tags) for v in found}

    def _with(self, *names: str) -> dict:
        return {name: self.resources[name] for name in names}

    def approval_tick(self) -> dg.SensorResult:
        resources = self._with("mlflow", "tenant", "governance", "events")
        with dg.build_sensor_context(resources=resources) as context:
            return approval_sensor(context)

    def redeploy_tick(self) -> dg.SensorResult | dg.SkipReason:
        resources = self._with("mlflow", "tenant", "events")
        with dg.build_sensor_context(resources=resources) as context:
            return redeploy_sensor(context)

    def promote(self, run_request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        return promotion_job.execute_in_process(
            run_config=run_request.run_config,
            resources=self._with("mlflow", "tenant", "governance", "events"),
            tags=run_request.tags,
        )


@pytest.fixture
def tenants(tmp_path):
    home = tmp_path / "shared"
    return Tenant("acme", home), Tenant("globex", home)


def test_each_tenant_has_its_own_experiment_model_and_feast_project(tenants):
    acme, globex = tenants
    assert (acme.model, globex.model) == ("acme.flight_delay", "globex.flight_delay")
    assert (acme.approvers, globex.approvers) == (["carol", "dave"], ["erin"])
    assert acme.tenant.experiment_name != globex.tenant.experiment_name
    assert acme.tenant.feast_project != globex.tenant.feast_project
    assert acme.resources["mlflow"].client().tracking_uri == globex.client.tracking_uri


def test_one_tenants_sensors_and_jobs_never_touch_the_others_models(tenants):
    acme, globex = tenants
    for tenant in (acme, globex):
        first = tenant.add_version()
        transition(tenant.client, tenant.audit, tenant.model, first, Stage.PRODUCTION, "ops", "")
        pending = tenant.add_version()
        request_production(tenant.client, tenant.audit, tenant.model, pending, "alice", "next")
        approver = tenant.approvers[0]
        decide(tenant.client, tenant.audit, tenant.model, pending, approver, Decision.APPROVED,
               "", tenant.approvers)  # fmt: skip
    before = globex.versions()

    [order] = acme.approval_tick().run_requests
    assert order.tags["facilflow/model"] == acme.model
    assert acme.promote(order).success
    assert acme.versions()["2"][STAGE_TAG] == "Production"
    [deploy] = acme.redeploy_tick().run_requests
    assert deploy.run_key.startswith(f"deploy:{acme.model}:v2")
    # globex's approved request is still waiting for globex's own sensor.
    assert globex.versions() == before
    assert {r.model for r in globex.audit.history(globex.model)} == {globex.model}
    assert {r.model for r in acme.audit.history(acme.model)} == {acme.model}
    [globex_order] = globex.approval_tick().run_requests
    assert globex_order.tags["facilflow/model"] == globex.model


def test_an_approver_of_one_tenant_is_refused_by_the_others_workflow(tenants):
    acme, globex = tenants
    pending = acme.add_version()
    request_production(acme.client, acme.audit, acme.model, pending, "alice", "review please")
    with pytest.raises(GovernanceError, match="erin is not a designated approver"):
        decide(
            acme.client,
            acme.audit,
            acme.model,
            pending,
            "erin",
            Decision.APPROVED,
            "",
            acme.approvers,
        )
    # Set by hand in the MLflow UI instead: acme's sensor refuses it and launches nothing.
    acme.client.set_model_version_tag(acme.model, pending, DECISION, "approved")
    acme.client.set_model_version_tag(acme.model, pending, DECISION_BY, "erin")
    tick = acme.approval_tick()
    assert tick.run_requests == []
    assert acme.versions()[pending][STAGE_TAG] == "Staging"
    events = [json.loads(e.body) for e in acme.resources["events"].outbox().waiting(100)]
    [refusal] = [e for e in events if e["type"] == "MODEL_TRANSITION_REJECTED"]
    assert "erin is not a designated approver" in refusal["payload"]["reason"]


def test_every_event_in_the_shared_outbox_names_its_tenant_and_model(tenants):
    acme, globex = tenants
    for tenant in tenants:
        version = tenant.add_version()
        request_production(tenant.client, tenant.audit, tenant.model, version, "alice", "go")
        tenant.approval_tick()  # announces the request made outside the CLI
    outbox = acme.resources["events"].outbox()
    events = [json.loads(e.body) for e in outbox.waiting(100)]
    assert {(e["tenant"], e["model"]) for e in events} == {
        ("acme", acme.model),
        ("globex", globex.model),
    }
    assert outbox.waiting_count("acme") == outbox.waiting_count("globex") == 1
    assert all(e["use_case"] == "flight_delay" for e in events)


def test_each_tenants_features_are_its_own_in_the_shared_registry_folder_and_redis(built_home):
    """Two tenants' Feast projects over the same feature files and the real Redis: each
    reads the values it loaded, and removing one leaves the other's keys and values."""
    suffix = uuid.uuid4().hex[:8]
    ends = {f"acme_{suffix}": datetime(2013, 7, 1, tzinfo=UTC),
            f"globex_{suffix}": datetime(2013, 3, 1, tzinfo=UTC)}  # fmt: skip
    stores = {name: _online_store(name, built_home.home) for name in ends}
    client = redis.Redis(host="127.0.0.1", port=6379)

    def keys(tenant: str) -> int:
        return sum(1 for _ in client.scan_iter(f"*{tenant}_flight_delay".encode(), count=10_000))

    weather = pl.read_parquet(built_home.home / "features" / "weather_hourly.parquet")
    try:
        for name, store in stores.items():
            store.materialize(
                start_date=ends[name] - timedelta(days=1), end_date=ends[name],
                feature_views=["weather_hourly"],
            )  # fmt: skip
        for name, store in stores.items():
            assert store.project == f"{name}_flight_delay"
            assert _pressure_at_ewr(store) == _latest_pressure_at_ewr(weather, ends[name])
        acme, globex = stores
        acme_keys = keys(acme)
        assert acme_keys > 0 and keys(globex) > 0
        stores.pop(globex).teardown()
        assert keys(globex) == 0 and keys(acme) == acme_keys
        assert _pressure_at_ewr(stores[acme]) == _latest_pressure_at_ewr(weather, ends[acme])
    finally:
        for store in stores.values():
            store.teardown()


def _online_store(tenant: str, home) -> FeatureStore:
    feast = redis_feast(tenant, StorageResource(home=str(home)))
    feast.apply()
    return feast.feature_store()


def _pressure_at_ewr(store: FeatureStore) -> float | None:
    online = store.get_online_features(
        features=["weather_hourly:pressure_mb"], entity_rows=[{"origin_airport_code": "EWR"}]
    ).to_dict()
    return online["pressure_mb"][0]


def _latest_pressure_at_ewr(weather: pl.DataFrame, end: datetime) -> float | None:
    at_ewr = weather.filter((pl.col("airport_code") == "EWR") & (pl.col("reported_at") <= end))
    return at_ewr.sort("reported_at")["pressure_mb"][-1]
