"""Two tenants side by side on shared stores (one MLflow store, one event outbox) and one
Dagster instance, each with its own location's definitions, experiment, registered model
and approvers: one tenant's sensors and jobs never read or change the other's models or
launch runs on its assets, and every event says whose it is."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl
import pytest
import redis
from feast import FeatureStore

from facilflow_assets.definitions import tenant_definitions
from facilflow_assets.environment import Environment
from facilflow_assets.features.feast_objects import repo_contents
from facilflow_assets.governance.audit import AuditTrail
from facilflow_assets.governance.digest import DIGEST_TAG
from facilflow_assets.governance.requests import (
    DECISION,
    DECISION_BY,
    Decision,
    decide,
    request_production,
)
from facilflow_assets.governance.stages import STAGE_TAG, Stage
from facilflow_assets.governance.transitions import SYSTEM_ACTOR, GovernanceError, transition
from facilflow_assets.resource_map import build_resources
from facilflow_assets.scope import ModelScope
from facilflow_assets.tenants import TenantSpec
from jobs.promotion import promotion_op_name
from resources import GovernanceResource, StorageResource
from tests.lifecycle import lifecycle
from tests.redis_feast import redis_feast

# One setting for both tenants, as prod's FACILFLOW_APPROVERS and the server app read it.
APPROVERS = "acme=carol,dave;globex=erin"


class Tenant:
    """A tenant's location over the shared stores and instance, and its model's versions."""

    def __init__(self, name: str, home, instance: dg.DagsterInstance):
        self.resources = build_resources(Environment.LOCAL, home=home)  # the shared stores
        self.resources["governance"] = GovernanceResource(approvers=APPROVERS)
        self.instance = instance
        self.lifecycle = lifecycle("flight_delay", name)
        self.scope = self.lifecycle.scope
        self.model = self.scope.registered_model_name
        self.client = self.resources["mlflow"].client()
        self.audit = AuditTrail(self.client, self.scope.audit_experiment_name)
        self.client.create_registered_model(self.model)
        self.approvers = self.resources["governance"].approvers_of(self.model)

    def add_version(self, stage: Stage = Stage.STAGING) -> str:
        experiment = self.resources["mlflow"].ensure_experiment(self.scope)
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
                self.client,
                self.audit,
                self.model,
                str(version.version),
                stage,
                SYSTEM_ACTOR,
                "evaluated",
            )
        return str(version.version)

    def versions(self) -> dict[str, dict[str, str]]:
        """Every version's tags: what any change to the model would show."""
        found = self.client.search_model_versions(f"name = '{self.model}'")
        return {str(v.version): dict(v.tags) for v in found}

    def _with(self, *names: str) -> dict:
        return {name: self.resources[name] for name in names}

    def tick(self, sensor: str, *names: str):
        with dg.build_sensor_context(
            resources=self._with(*names), instance=self.instance
        ) as context:
            return self.lifecycle.sensor(sensor)(context)

    def approval_tick(self) -> dg.SensorResult:
        return self.tick("approval_sensor", "mlflow", "governance", "events")

    def redeploy_tick(self) -> dg.SensorResult | dg.SkipReason:
        return self.tick("redeploy_sensor", "mlflow", "events")

    def promote(self, run_request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        resources = self._with("mlflow", "governance", "events")
        return self.lifecycle.job("promotion_job", resources).execute_in_process(
            run_config=run_request.run_config, instance=self.instance, tags=run_request.tags
        )


@pytest.fixture
def tenants(tmp_path):
    home = tmp_path / "shared"
    with dg.instance_for_test() as instance:
        yield Tenant("acme", home, instance), Tenant("globex", home, instance)


def test_each_tenant_has_its_own_experiment_model_and_feast_project(tenants):
    acme, globex = tenants
    assert (acme.model, globex.model) == ("acme.flight_delay", "globex.flight_delay")
    assert (acme.approvers, globex.approvers) == (["carol", "dave"], ["erin"])
    assert acme.scope.experiment_name != globex.scope.experiment_name
    assert acme.scope.feast_project != globex.scope.feast_project
    assert acme.resources["mlflow"].client().tracking_uri == globex.client.tracking_uri


def test_one_tenants_sensors_and_jobs_never_touch_the_others_models(tenants):
    acme, globex = tenants
    for tenant in (acme, globex):
        first = tenant.add_version()
        transition(tenant.client, tenant.audit, tenant.model, first, Stage.PRODUCTION, "ops", "")
        pending = tenant.add_version()
        request_production(tenant.client, tenant.audit, tenant.model, pending, "alice", "next")
        approver = tenant.approvers[0]
        decide(
            tenant.client,
            tenant.audit,
            tenant.model,
            pending,
            approver,
            Decision.APPROVED,
            "",
            tenant.approvers,
        )
    before = globex.versions()

    [order] = acme.approval_tick().run_requests
    assert order.tags["facilflow/model"] == acme.model
    promoted = acme.promote(order)
    assert promoted.success
    run = acme.instance.get_run_by_id(promoted.run_id)
    assert (run.tags["facilflow/tenant"], run.tags["facilflow/use_case"]) == (
        "acme",
        "flight_delay",
    )
    assert acme.versions()["2"][STAGE_TAG] == "Production"
    [deploy] = acme.redeploy_tick().run_requests
    assert deploy.run_key.startswith(f"deploy:{acme.model}:v2")
    # globex's approved request is still waiting for globex's own sensor.
    assert globex.versions() == before
    assert {r.model for r in globex.audit.history(globex.model)} == {globex.model}
    assert {r.model for r in acme.audit.history(acme.model)} == {acme.model}
    [globex_order] = globex.approval_tick().run_requests
    assert globex_order.tags["facilflow/model"] == globex.model
    # An order carried to the other tenant's promotion job is refused, and changes nothing.
    acme_order = order.run_config["ops"][promotion_op_name(acme.scope)]
    promotion = globex.lifecycle.job(
        "promotion_job", globex._with("mlflow", "governance", "events")
    )
    refused = promotion.execute_in_process(
        run_config={"ops": {promotion_op_name(globex.scope): acme_order}},
        instance=globex.instance,
        raise_on_error=False,
    )
    assert not refused.success
    assert "promotes globex.flight_delay versions, not acme.flight_delay's" in str(
        refused.get_step_failure_events()[0].event_specific_data.error
    )


def test_a_tenants_sensors_launch_runs_only_on_its_own_assets(tmp_path):
    """Both tenants' locations on one instance: every job a sensor of one targets selects
    only that tenant's assets, and their keys never meet."""
    resources = build_resources(Environment.LOCAL, home=tmp_path / "home")
    locations = {
        name: tenant_definitions(
            name,
            resources,
            TenantSpec(description=name, use_cases=["flight_delay", "arrival_delay"]),
        )
        for name in ("acme", "globex")
    }
    keys = {}
    for name, location in locations.items():
        repository = location.get_repository_def()
        keys[name] = set(repository.asset_graph.materializable_asset_keys)
        assert {key.path[0] for key in keys[name]} == {name}
        for sensor in repository.sensor_defs:
            for job in sensor.jobs if sensor.has_jobs else []:
                resolved = repository.get_job(job.name)
                selected = (
                    resolved.asset_layer.selected_asset_keys if resolved.asset_layer else set()
                )
                assert all(key.path[0] == name for key in selected), (name, sensor.name, job)
                assert resolved.tags.get("facilflow/tenant") == name, (sensor.name, job)
    assert not keys["acme"] & keys["globex"]


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
    ends = {
        f"acme_{suffix}": datetime(2013, 7, 1, tzinfo=UTC),
        f"globex_{suffix}": datetime(2013, 3, 1, tzinfo=UTC),
    }
    stores = {name: _online_store(name, built_home) for name in ends}
    client = redis.Redis(host="127.0.0.1", port=6379)

    def keys(tenant: str) -> int:
        return sum(1 for _ in client.scan_iter(f"*{tenant}_flight_delay".encode(), count=10_000))

    files = StorageResource(home=str(built_home.home)).files(lifecycle().scope)
    weather = pl.read_parquet(files.feature_table_path("weather_hourly"))
    try:
        for name, store in stores.items():
            store.materialize(
                start_date=ends[name] - timedelta(days=1),
                end_date=ends[name],
                feature_views=["weather_hourly"],
            )
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


def _online_store(tenant: str, built_home) -> FeatureStore:
    """`tenant`'s Feast project over the demo's feature files, online in the real Redis."""
    storage = StorageResource(home=str(built_home.home))
    feast = redis_feast(storage)
    scope = ModelScope(tenant, "flight_delay")
    features = storage.files(lifecycle().scope).features_dir
    feast.apply(scope, repo_contents(lifecycle().use_case, features))
    return feast.feature_store(scope)


def _pressure_at_ewr(store: FeatureStore) -> float | None:
    online = store.get_online_features(
        features=["weather_hourly:pressure_mb"], entity_rows=[{"origin_airport_code": "EWR"}]
    ).to_dict()
    return online["pressure_mb"][0]


def _latest_pressure_at_ewr(weather: pl.DataFrame, end: datetime) -> float | None:
    at_ewr = weather.filter((pl.col("airport_code") == "EWR") & (pl.col("reported_at") <= end))
    return at_ewr.sort("reported_at")["pressure_mb"][-1]
