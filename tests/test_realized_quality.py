"""monitoring/realized_quality on the demo's real flights: the day's scored flights against
their departures once known, per version, beside the version's holdout and the estimate
from calibrated scores; a day whose outcomes are not due is not judged; a model trained
on shuffled labels fails the blocking check and emits one MODEL_QUALITY_DEGRADED per
version and day."""

import json
import shutil

import dagster as dg
import duckdb
import lightgbm as lgb
import numpy as np
import polars as pl
import pytest
from sklearn.metrics import brier_score_loss, log_loss, precision_score, recall_score, roc_auc_score

from facilflow_assets.environment import Environment
from facilflow_assets.monitoring.quality_assets import QUALITY_CHECK
from facilflow_assets.resource_map import build_resources
from tests.lifecycle import lifecycle

pytestmark = pytest.mark.slow

FLIGHT_DELAY = lifecycle()
DAY = FLIGHT_DELAY.use_case.demo_days.seen.isoformat()  # a day the demo scored


@pytest.fixture(scope="module")
def home(built_home, tmp_path_factory):
    """A copy of the built demo: its warehouse, its scored day, its versions."""
    return shutil.copytree(built_home.home, tmp_path_factory.mktemp("quality") / "facilflow")


def _judge(home, **config) -> dg.ExecuteInProcessResult:
    resources = build_resources(Environment.LOCAL, home=home)
    quality = FLIGHT_DELAY.asset("realized_quality")
    return dg.materialize(
        [quality],
        partition_key=DAY,
        resources={k: resources[k] for k in ("storage", "mlflow", "events")},
        run_config={"ops": {FLIGHT_DELAY.op("realized_quality"): {"config": config}}},
        raise_on_error=False,
    )


def _summary(home) -> dict:
    files = build_resources(Environment.LOCAL, home=home)["storage"].files(FLIGHT_DELAY.scope)
    return json.loads((files.monitoring_dir / "realized_quality" / f"{DAY}.json").read_text())


def _degradations(home) -> list[dict]:
    outbox = build_resources(Environment.LOCAL, home=home)["events"].outbox()
    return [
        json.loads(e.body)
        for e in outbox.waiting(limit=10_000)
        if e.event_type == "MODEL_QUALITY_DEGRADED"
    ]


def test_a_scored_day_is_judged_with_the_figures_an_independent_recomputation_gives(home):
    result = _judge(home)
    assert result.success
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == QUALITY_CHECK and check.passed
    [version] = _summary(home)["versions"]
    # From the departures themselves: delayed when 15 minutes late or more; a cancelled
    # flight has no departure, so no outcome.
    predictions = pl.read_parquet(home / "tenants/demo/flight_delay/predictions" / f"{DAY}.parquet")
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as connection:
        departures = pl.from_arrow(
            connection.sql(
                "select flight_id, departure_delay_minutes from staging.stg_flights"
            ).to_arrow_table()
        )
    assert isinstance(departures, pl.DataFrame)
    joined = predictions.join(departures, on="flight_id").filter(
        pl.col("departure_delay_minutes").is_not_null()
    )
    labels = (joined["departure_delay_minutes"] >= 15).cast(pl.Int8).to_numpy()
    scores = joined["delay_probability"].to_numpy()
    # At the threshold the version's evaluation chose on validation, which it is tagged with.
    client = build_resources(Environment.LOCAL, home=home)["mlflow"].client()
    registered = client.get_model_version(
        FLIGHT_DELAY.scope.registered_model_name, version["version"]
    )
    threshold = float(registered.tags["facilflow.decision_threshold"])
    assert version["decision_threshold"] == pytest.approx(threshold)
    assert (version["scored"], version["labelled"]) == (predictions.height, joined.height)
    expected = {
        "auc": roc_auc_score(labels, scores),
        "log_loss": log_loss(labels, np.clip(scores, 1e-7, 1 - 1e-7)),
        "brier": brier_score_loss(labels, scores),
        "precision": precision_score(labels, scores >= threshold, zero_division=0),
        "recall": recall_score(labels, scores >= threshold, zero_division=0),
        "accuracy": float(((scores >= threshold) == labels).mean()),
    }
    for metric, value in expected.items():
        assert version["metrics"][metric] == pytest.approx(value, abs=1e-9), metric
    # Beside the version's holdout figures, and judged on AUC against them.
    assert 0.5 < version["holdout"]["auc"] < 1
    # And the estimate from every scored flight's calibrated score, outcome or not.
    assert 0.5 < version["estimated"]["auc"] < 1 and 0.5 < version["estimated"]["accuracy"] < 1
    assert version["judgement"]["metric"] == "auc" and not version["judgement"]["degraded"]
    materialized = result.asset_materializations_for_node(FLIGHT_DELAY.op("realized_quality"))
    metadata = materialized[0].metadata
    assert metadata["judged"].value is True
    assert "auc_over_days" in metadata and metadata["rows_labelled"].value == joined.height
    assert _degradations(home) == []


def test_a_day_whose_outcomes_are_not_due_is_shown_not_judged(home):
    result = _judge(home, as_of=f"{DAY}T12:00:00")
    assert result.success
    [check] = result.get_asset_check_evaluations()
    assert check.passed and "not judged" in check.description
    [version] = _summary(home)["versions"]
    assert version["judgement"] is None
    assert 0.5 < version["estimated"]["auc"] < 1  # the estimate needs no outcome
    assert version["labelled"] < version["scored"]  # only what was known by noon
    assert _degradations(home) == []


def _trained_on_shuffled_labels(home, inputs: list[str]) -> lgb.Booster:
    """A model of the version's inputs trained on its training months with the labels
    shuffled: it learned nothing about delays."""
    splits = FLIGHT_DELAY.use_case.splits
    training = pl.read_parquet(home / "tenants/demo/flight_delay/training/flight_delay_v1.parquet")
    months = training.filter(
        pl.col("event_timestamp").dt.date().is_between(splits.train_start, splits.validation_start)
    )
    labels = months["is_delayed"].shuffle(seed=7).to_numpy()
    dataset = lgb.Dataset(months.select(inputs).to_numpy(), labels)
    return lgb.train({"objective": "binary", "verbose": -1, "seed": 7}, dataset, 30)


def test_a_model_trained_on_shuffled_labels_fails_the_check_once_per_version_and_day(home):
    """The day's flights scored, on the inputs the version scored them with, by a model
    whose training labels were shuffled."""
    path = home / "tenants/demo/flight_delay/predictions" / f"{DAY}.parquet"
    original = pl.read_parquet(path)
    not_inputs = {*FLIGHT_DELAY.use_case.target.keys, FLIGHT_DELAY.use_case.target.time}
    not_inputs |= {"delay_probability", "model", "model_version"}
    inputs = [c for c in original.columns if c not in not_inputs]
    scores = _trained_on_shuffled_labels(home, inputs).predict(original.select(inputs).to_numpy())
    original.with_columns(pl.Series("delay_probability", scores)).write_parquet(path)
    try:
        for _ in range(2):  # judged twice: still one event
            result = _judge(home)
            [check] = result.get_asset_check_evaluations()
            assert not check.passed
            assert "worse than the holdout" in check.description
            assert "evaluation_v" in " ".join(check.metadata)
        [event] = _degradations(home)
        payload = event["payload"]
        assert (payload["partition"], payload["metric"]) == (DAY, "auc")
        assert payload["value"] < payload["holdout_value"] * 0.95
        assert event["version"] == str(original["model_version"][0])
    finally:
        original.write_parquet(path)
