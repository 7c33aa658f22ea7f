"""The real-time endpoint on a real Ray Serve deployment, with features from the real Feast
online store of the demo's data, and batch scoring of a day partition."""

import shutil
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import numpy as np
import polars as pl
import pytest
import requests

from facilflow_assets.environment import Environment
from facilflow_assets.features.feast_objects import repo_contents
from facilflow_assets.features.service_versions import FEATURE_SERVICE_TAG
from facilflow_assets.features.target_rows import latest_keys
from facilflow_assets.governance.audit import AuditTrail
from facilflow_assets.governance.digest import DIGEST_TAG
from facilflow_assets.governance.stages import Stage
from facilflow_assets.governance.transitions import SYSTEM_ACTOR, transition
from facilflow_assets.resource_map import build_resources
from facilflow_assets.serving.models import load, resolve
from facilflow_assets.serving.request_log import read_requests
from facilflow_assets.serving.routing import route
from facilflow_assets.training.dataset import feature_matrix
from resources import ServingResource, StorageResource
from tests.endpoint_probe import Probe
from tests.lifecycle import lifecycle
from tests.mlflow_server import free_port
from tests.redis_feast import redis_feast

MODEL = "demo.flight_delay"
FLIGHT_DELAY = lifecycle()
DAY = "2013-06-15"
CANARY_REQUESTS = 250


class Deployment:
    """A copy of the demo's home whose endpoint runs on a Ray head of its own."""

    def __init__(self, home, http_port: int | None = None):
        self.home = home
        self.resources = build_resources(Environment.LOCAL, home=home)
        self.resources["serving"] = ServingResource(
            http_port=http_port or free_port(),
            state_dir=str(home / "serve"),
            request_log_dir=str(home / "serving" / "requests"),
        )
        self.client = self.resources["mlflow"].client()
        self.sample = latest_keys(self.resources["storage"], FLIGHT_DELAY.use_case)
        self.url = ""

    def deploy(self, challenger_share: float = 0.0, raise_on_error: bool = True, use_case=None):
        use_case = use_case or FLIGHT_DELAY
        result = dg.materialize(
            [use_case.asset("prediction_endpoint")],
            resources=self.resources,
            run_config={
                "ops": {
                    use_case.op("prediction_endpoint"): {
                        "config": {"challenger_share": challenger_share}
                    }
                }
            },
            raise_on_error=raise_on_error,
        )
        if result.success:
            [event] = result.get_asset_materialization_events()
            metadata = event.event_specific_data.materialization.metadata
            self.url = metadata["url"].value
        return result

    def post(self, body, request_id: str | None = None, session=requests):
        headers = {"x-request-id": request_id} if request_id else {}
        return session.post(self.url, json=body, headers=headers, timeout=30)

    def add_staging_version(self) -> str:
        """Version 1's model registered again, in Staging: a challenger to route to."""
        production = self.client.get_model_version_by_alias(MODEL, "production")
        version = self.client.create_model_version(
            MODEL,
            production.source,
            run_id=production.run_id,
            model_id=production.model_id,
            # The same files, trained on the same feature service.
            tags={key: production.tags[key] for key in (DIGEST_TAG, FEATURE_SERVICE_TAG)},
        )
        self.move(str(version.version), Stage.STAGING)
        return str(version.version)

    def move(self, version: str, stage: Stage, scope=FLIGHT_DELAY.scope) -> None:
        """An audited move, as the registry asset and the promotion job make them."""
        audit = AuditTrail(self.client, scope.audit_experiment_name)
        name = scope.registered_model_name
        transition(self.client, audit, name, version, stage, SYSTEM_ACTOR, "test")


@pytest.fixture(scope="module")
def deployment(built_home, tmp_path_factory):
    home = tmp_path_factory.mktemp("serving") / "facilflow"
    shutil.copytree(built_home.home, home)
    served = Deployment(home)
    try:
        served.deploy()
        yield served
    finally:
        served.resources["serving"].stop_local_cluster()


def test_the_endpoint_predicts_from_online_features_and_says_which_version(deployment):
    response = deployment.post(deployment.sample, request_id="req-1")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["request_id"] == "req-1" == response.headers["x-request-id"]
    assert (answer["model"], answer["model_version"], answer["role"]) == (MODEL, "1", "production")
    assert answer["features_found"] == answer["features_expected"] == 39
    # The same prediction as the model itself on the same online features.
    model = load(deployment.client, resolve(deployment.client, MODEL, "1"))
    store = deployment.resources["feast"].feature_store(FLIGHT_DELAY.scope)
    online = store.get_online_features(
        features=store.get_feature_service("flight_delay_v1"),
        entity_rows=[deployment.sample],
        full_feature_names=True,
    ).to_dict()
    row = pl.DataFrame({name: online[name] for name in model.input_names})
    expected = model.predict(feature_matrix(row, model.input_names))[0]
    assert answer["prediction"] == pytest.approx(expected, rel=1e-6)
    generated = deployment.post(deployment.sample).json()["request_id"]
    assert uuid.UUID(generated)


@pytest.mark.parametrize(
    ("make_body", "fields"),
    [
        (
            lambda sample: {"carrier_code": "UA"},
            {"flight_id", "origin_airport_code", "route", "tail_number"},
        ),
        (lambda sample: {**sample, "carrier_code": 7}, {"carrier_code"}),
        (lambda sample: {**sample, "wind": "high"}, {"wind"}),
        (lambda sample: {**sample, "route": ""}, {"route"}),
    ],
    ids=["missing keys", "wrong type", "unknown field", "empty key"],
)
def test_invalid_requests_answer_422_with_the_offending_fields(deployment, make_body, fields):
    response = deployment.post(make_body(deployment.sample))
    assert response.status_code == 422, response.text
    assert set(response.json()["fields"]) == fields


def test_a_body_that_is_not_a_json_object_is_a_4xx(deployment):
    response = requests.post(deployment.url, data="flight UA1545", timeout=30)
    assert response.status_code == 400
    assert response.json() == {"error": "the body is not JSON"}
    response = deployment.post([deployment.sample])
    assert response.status_code == 422
    assert "JSON object of entity keys" in response.json()["error"]


def test_every_request_is_in_the_request_log_with_version_latency_and_features(deployment):
    request_id = f"logged-{uuid.uuid4()}"
    assert deployment.post(deployment.sample, request_id=request_id).status_code == 200
    assert deployment.post({"carrier_code": 1}, request_id=f"{request_id}-bad").status_code == 422
    root = deployment.resources["serving"].request_log_path(FLIGHT_DELAY.scope)
    today = datetime.now(UTC).date().isoformat()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        logged = read_requests(root, today).filter(pl.col("request_id").str.starts_with(request_id))
        if logged.height == 2:
            break
        time.sleep(0.5)
    ok = logged.filter(pl.col("outcome") == "ok").row(0, named=True)
    assert (ok["model_version"], ok["role"], ok["status"]) == ("1", "production", 200)
    assert 0 < ok["latency_ms"] < 5000 and 0 <= ok["prediction"] <= 1
    assert ok["weather_hourly__temperature_f"] is not None
    bad = logged.filter(pl.col("outcome") == "invalid").row(0, named=True)
    assert bad["status"] == 422 and "invalid request" in bad["error"]


def test_the_challenger_gets_its_share_reproducibly_and_zero_removes_it(deployment):
    challenger = deployment.add_staging_version()
    deployment.deploy(challenger_share=0.3)
    session = requests.Session()
    ids = [f"canary-{n}" for n in range(CANARY_REQUESTS)]
    served = {
        i: deployment.post(deployment.sample, i, session).json()["model_version"] for i in ids
    }
    share = Counter(served.values())[challenger] / len(ids)
    # Binomial(250, 0.3): the standard deviation of the share is 0.029; 4 of them is 0.116.
    assert abs(share - 0.3) < 0.116
    assert all((served[i] == challenger) == (route(i, 0.3) == "challenger") for i in ids)
    again = deployment.post(deployment.sample, ids[0], session).json()["model_version"]
    assert again == served[ids[0]]
    deployment.deploy(challenger_share=0.0)
    versions = {deployment.post(deployment.sample, i, session).json()["model_version"] for i in ids}
    assert versions == {"1"}


def test_a_promotion_redeploys_with_no_failed_request_and_a_broken_model_changes_nothing(
    deployment,
):
    new = deployment.add_staging_version()
    with Probe(deployment) as probe:
        time.sleep(1)
        deployment.move(new, Stage.PRODUCTION)
        deployment.deploy()
        time.sleep(1)
    assert probe.failures == []
    assert probe.versions["1"] > 0 and probe.versions[new] > 0
    assert deployment.post(deployment.sample).json()["model_version"] == new

    broken = deployment.client.create_model_version(
        MODEL,
        str(deployment.home / "nowhere"),
        run_id=None,
        tags={DIGEST_TAG: "sha256:none", FEATURE_SERVICE_TAG: "flight_delay_v1"},
    )
    deployment.move(str(broken.version), Stage.PRODUCTION)
    failed = deployment.deploy(raise_on_error=False)
    assert not failed.success
    [failure] = [e for e in failed.all_events if e.is_step_failure]
    assert f"models:/{MODEL}/{broken.version}" in str(failure.event_specific_data.error)
    assert deployment.post(deployment.sample).json()["model_version"] == new
    deployment.move(new, Stage.PRODUCTION)


def test_replaced_model_files_are_not_deployed_and_the_endpoint_keeps_its_version(deployment):
    serving = deployment.post(deployment.sample).json()["model_version"]
    production = deployment.client.get_model_version_by_alias(MODEL, "production")
    mlmodel = Path(urlparse(production.source).path) / "MLmodel"
    original = mlmodel.read_bytes()
    mlmodel.write_bytes(original + b"# replaced after the approval\n")  # past the server
    try:
        failed = deployment.deploy(raise_on_error=False)
    finally:
        mlmodel.write_bytes(original)
    assert not failed.success
    [failure] = [e for e in failed.all_events if e.is_step_failure]
    assert "not the" in str(failure.event_specific_data.error)
    assert "evaluated and approved" in str(failure.event_specific_data.error)
    waiting = deployment.resources["events"].outbox().waiting(limit=1000)
    violations = [e for e in waiting if e.event_type == "MODEL_GOVERNANCE_VIOLATION"]
    assert violations and "prediction_endpoint" in violations[-1].body
    assert deployment.post(deployment.sample).json()["model_version"] == serving


def test_batch_scoring_of_a_day_matches_the_model_on_the_training_set(deployment):
    result = dg.materialize(
        [FLIGHT_DELAY.asset("batch_predictions")], partition_key=DAY, resources=deployment.resources
    )
    [event] = result.get_asset_materialization_events()
    metadata = event.event_specific_data.materialization.metadata
    scored = pl.read_parquet(metadata["path"].value)
    flights = deployment.resources["storage"].read_warehouse("marts/flight_schedule")
    day_flights = flights.filter(
        pl.col("scheduled_departure_at").dt.convert_time_zone("America/New_York").dt.date()
        == datetime.fromisoformat(DAY).date()
    )
    assert scored.height == day_flights.height == metadata["dagster/row_count"].value
    version = metadata["model_version"].value
    assert set(scored["model_version"]) == {version}
    # Departed flights are in the training set with the same point-in-time features.
    files = StorageResource(home=str(deployment.home)).files(FLIGHT_DELAY.scope)
    training = pl.read_parquet(files.training_set_path("flight_delay_v1"))
    both = scored.join(training, on="flight_id")
    assert both.height > 0.9 * scored.height
    model = load(deployment.client, resolve(deployment.client, MODEL, version))
    direct = model.predict(feature_matrix(both, model.input_names))
    score = FLIGHT_DELAY.use_case.score
    np.testing.assert_allclose(both[score].to_numpy(), direct, rtol=1e-6)


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"weather_hourly__temperature_f": "temperature"}, "lacks column(s) temperature"),
        ({"weather_hourly__temperature_f": "route"}, "route is String"),
        ({"not_an_input": "route"}, "names not_an_input, which"),
    ],
)
def test_a_missing_or_mistyped_mapped_column_fails_with_the_column_named(
    deployment, mapping, message
):
    result = dg.materialize(
        [FLIGHT_DELAY.asset("batch_predictions")],
        partition_key=DAY,
        resources=deployment.resources,
        run_config={
            "ops": {
                FLIGHT_DELAY.op("batch_predictions"): {
                    "config": {"column_mapping": mapping, "version": "1"}
                }
            }
        },
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert message in str(failure.event_specific_data.error)


def test_drift_of_a_day_never_scored_is_an_error_naming_the_missing_input(deployment):
    result = dg.materialize(
        [FLIGHT_DELAY.asset("feature_drift")],
        partition_key="2013-03-03",
        resources=deployment.resources,
        raise_on_error=False,
    )
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "no batch predictions for 2013-03-03" in str(failure.event_specific_data.error)


def test_the_endpoint_reads_the_prod_online_store_on_redis(deployment):
    """The same endpoint with Feast's Redis online store (the real Redis on 127.0.0.1:6379),
    loaded with the data's last two days, with a registry of its own; its keys are removed
    afterwards."""
    scope = FLIGHT_DELAY.scope
    feast = redis_feast(StorageResource(home=str(deployment.home / "redis")))
    features = StorageResource(home=str(deployment.home)).files(scope).features_dir
    feast.apply(scope, repo_contents(FLIGHT_DELAY.use_case, features))
    store = feast.feature_store(scope)
    sqlite_resources = deployment.resources
    try:
        end = datetime(2014, 1, 1, 6, tzinfo=UTC)
        store.materialize(start_date=end - timedelta(days=2), end_date=end)
        deployment.resources = {**deployment.resources, "feast": feast}
        deployment.deploy()
        answer = deployment.post(deployment.sample).json()
        online = store.get_online_features(
            features=store.get_feature_service("flight_delay_v1"),
            entity_rows=[deployment.sample],
            full_feature_names=True,
        ).to_dict()
        model = load(deployment.client, resolve(deployment.client, MODEL, answer["model_version"]))
        row = pl.DataFrame({name: online[name] for name in model.input_names})
        found = sum(value[0] is not None for name, value in online.items() if "__" in name)
        assert answer["features_found"] == found >= 25  # older rows are not in the window
        expected = model.predict(feature_matrix(row, model.input_names))[0]
        assert answer["prediction"] == pytest.approx(expected, rel=1e-6)
    finally:
        store.teardown()
        deployment.resources = sqlite_resources


def test_a_regression_endpoint_answers_an_amount_with_no_decision(deployment):
    """arrival_delay's version 1, promoted and deployed beside the classifier on the same
    Ray Serve: its answer is the predicted minutes, named after the label."""
    regression = lifecycle("arrival_delay")
    loaded = dg.materialize([regression.asset("online_store")], resources=deployment.resources)
    assert loaded.success
    deployment.move("1", Stage.PRODUCTION, regression.scope)
    result = deployment.deploy(use_case=regression)
    [event] = result.get_asset_materialization_events()
    url = event.event_specific_data.materialization.metadata["url"].value
    assert url.endswith("/demo/arrival_delay/predict")
    sample = latest_keys(deployment.resources["storage"], regression.use_case)
    response = requests.post(url, json=sample, timeout=30)
    assert response.status_code == 200, response.text
    answer = response.json()
    amount = answer["predicted_arrival_delay_minutes"]
    assert isinstance(amount, float) and -120 < amount < 1440
    assert answer["prediction"] == amount
    assert "arrival_delay_minutes" not in answer
    assert (answer["model"], answer["model_version"]) == ("demo.arrival_delay", "1")
