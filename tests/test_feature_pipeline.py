"""The feature stage on the real flight data: tables, Feast registry, online store, training set."""

import os
import random
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import redis
from click.testing import CliRunner

from facilflow_assets.cli import main
from facilflow_assets.environment import Environment
from facilflow_assets.features.engine import compute_features
from facilflow_assets.features.feast_assets import (
    MaterializeConfig,
    build_entity_frame,
    data_version,
)
from facilflow_assets.features.feast_objects import repo_contents
from facilflow_assets.features.table_assets import build_feature_table_asset
from facilflow_assets.resource_map import build_resources
from facilflow_assets.scope import ModelScope
from resources import StorageResource
from tests.lifecycle import lifecycle
from tests.redis_feast import redis_feast

HISTORY_TABLES = {
    "carrier_history": "carrier_code",
    "route_history": "route",
    "plane_history": "tail_number",
}


def _summary(built_home) -> dict:
    return {s.asset: s for s in built_home.summary}


def _files(built_home, use_case: str = "flight_delay"):
    return StorageResource(home=str(built_home.home)).files(lifecycle(use_case).scope)


@pytest.mark.parametrize("use_case", ["flight_delay", "arrival_delay"])
def test_every_feature_table_is_written_and_passes_its_four_checks(built_home, use_case):
    files = _files(built_home, use_case)
    summary = _summary(built_home)
    for table in lifecycle(use_case).use_case.tables:
        entry = summary[lifecycle(use_case).key(table.name)]
        assert (entry.checks_passed, entry.checks_failed) == (4, 0), table.name
        assert (
            entry.rows
            == pl.scan_parquet(files.feature_table_path(table.name))
            .select(pl.len())
            .collect()
            .item()
        )


def test_the_training_set_has_every_service_feature_for_every_departed_flight(built_home):
    home = built_home.home
    frame = pl.read_parquet(_files(built_home).training_set_path("flight_delay_v1"))
    feast = build_resources(Environment.LOCAL, home=home)["feast"]
    service = feast.feature_store(lifecycle().scope).get_feature_service("flight_delay_v1")
    expected = {
        f"{p.name_to_use()}__{f.name}" for p in service.feature_view_projections for f in p.features
    }
    assert expected <= set(frame.columns)
    rows = _summary(built_home)[lifecycle().key("training_set")].rows
    assert frame.height == 328_521 == rows
    assert frame["flight_id"].n_unique() == frame.height
    assert 0.15 < frame["is_delayed"].mean() < 0.3
    assert frame["weather_hourly__temperature_f"].null_count() / frame.height < 0.02


def test_a_flight_sees_only_the_weather_reports_made_before_its_prediction(built_home):
    """An hour's report is made at minute 51: a flight predicted earlier in that hour gets
    the previous hour's report, though the source files both under their hour."""
    home = built_home.home
    frame = pl.read_parquet(_files(built_home).training_set_path("flight_delay_v1"))
    reports = StorageResource(home=str(home)).read_warehouse("staging/stg_weather")
    by_hour = reports.select(
        pl.col("airport_code").alias("origin_airport_code"),
        pl.col("observed_hour_at").alias("hour"),
        "temperature_f",
    )
    early = (
        frame.filter(pl.col("event_timestamp").dt.minute() < 51)
        .select(
            "origin_airport_code",
            "event_timestamp",
            served=pl.col("weather_hourly__temperature_f"),
            hour=pl.col("event_timestamp").dt.truncate("1h"),
        )
        .join(by_hour.rename({"temperature_f": "this_hour"}), on=["origin_airport_code", "hour"])
        .join(
            by_hour.rename({"temperature_f": "hour_before"}).with_columns(
                pl.col("hour") + pl.duration(hours=1)
            ),
            on=["origin_airport_code", "hour"],
        )
        .drop_nulls(["served", "this_hour", "hour_before"])
    )
    differ = early.filter(pl.col("this_hour") != pl.col("hour_before"))
    assert differ.height > 10_000  # hours whose own report would have given another value
    assert (differ["served"] == differ["hour_before"]).all()


def test_the_data_version_is_a_content_hash(built_home):
    frame = pl.read_parquet(_files(built_home).training_set_path("flight_delay_v1"))
    assert data_version(frame) == data_version(frame.sample(fraction=1.0, shuffle=True, seed=1))
    changed = frame.with_columns(pl.col("is_delayed").reverse())
    assert data_version(changed) != data_version(frame)


def test_the_online_store_serves_each_entitys_latest_values(built_home):
    home = built_home.home
    store = build_resources(Environment.LOCAL, home=home)["feast"].feature_store(lifecycle().scope)
    online = store.get_online_features(
        features=["weather_hourly:visibility_mi", "carrier_history:carrier_delay_rate_7d"],
        entity_rows=[
            {"origin_airport_code": "JFK", "carrier_code": "UA"},
            {"origin_airport_code": "EWR", "carrier_code": "B6"},
        ],
    ).to_dict()
    files = _files(built_home)
    weather = pl.read_parquet(files.feature_table_path("weather_hourly"))
    carriers = pl.read_parquet(files.feature_table_path("carrier_history"))
    for i, (airport, carrier) in enumerate([("JFK", "UA"), ("EWR", "B6")]):
        last_weather = weather.filter(pl.col("airport_code") == airport).sort("reported_at")
        last_carrier = carriers.filter(pl.col("carrier_code") == carrier).sort("departed_at")
        assert online["visibility_mi"][i] == last_weather["visibility_mi"][-1]
        assert online["carrier_delay_rate_7d"][i] == last_carrier["carrier_delay_rate_7d"][-1]


def test_the_online_store_end_time_is_utc_and_a_bad_one_names_the_field():
    assert MaterializeConfig(end="2013-06-01T12:00:00").end_time() == datetime(
        2013, 6, 1, 12, tzinfo=UTC
    )
    assert MaterializeConfig().end_time() is None
    with pytest.raises(ValueError, match="field 'end': 'yesterday' is not an ISO 8601 time"):
        MaterializeConfig(end="yesterday").end_time()


def _history_training_rows(home: Path, outcomes: pl.DataFrame, entities: pl.DataFrame):
    """History features for `entities` with the history tables computed from `outcomes`."""
    resources = build_resources(Environment.LOCAL, home=home)
    use_case, scope = lifecycle().use_case, lifecycle().scope
    files = resources["storage"].files(scope)
    files.features_dir.mkdir(parents=True)
    for table in HISTORY_TABLES:
        computed = compute_features(use_case.table(table), outcomes.lazy())
        computed.write_parquet(files.feature_table_path(table))
    feast = resources["feast"]
    feast.apply(scope, repo_contents(use_case, files.features_dir))
    refs = [f"{table}:{f.name}" for table in HISTORY_TABLES for f in use_case.table(table).features]
    job = feast.feature_store(scope).get_historical_features(
        entity_df=entities.to_pandas(), features=refs, full_feature_names=True
    )
    frame = pl.from_pandas(job.to_df()).sort("flight_id")
    return frame.with_columns(pl.col("event_timestamp").dt.convert_time_zone("UTC"))


def test_history_features_never_see_a_flights_own_or_a_later_outcome(built_home, tmp_path):
    """Change the outcome of some flights; a training row may change only where a changed
    flight shares its carrier, route or plane and departed at or before the row's time."""
    home = built_home.home
    storage = StorageResource(home=str(home))
    outcomes = storage.read_warehouse("marts/flight_outcomes")
    rng = random.Random(13)
    flipped_ids = set(rng.sample(outcomes["flight_id"].to_list(), 60))
    flipped = outcomes.filter(pl.col("flight_id").is_in(flipped_ids))
    perturbed = outcomes.with_columns(
        is_delayed=pl.when(pl.col("flight_id").is_in(flipped_ids))
        .then(1 - pl.col("is_delayed"))
        .otherwise(pl.col("is_delayed")),
        departure_delay_minutes=pl.when(pl.col("flight_id").is_in(flipped_ids))
        .then(pl.col("departure_delay_minutes") + 240)
        .otherwise(pl.col("departure_delay_minutes")),
    )
    all_rows = build_entity_frame(storage, lifecycle().use_case, lead_minutes=60)
    sample_ids = flipped_ids | set(rng.sample(all_rows["flight_id"].to_list(), 20_000))
    entities = all_rows.filter(pl.col("flight_id").is_in(sample_ids))

    before = _history_training_rows(tmp_path / "before", outcomes, entities)
    after = _history_training_rows(tmp_path / "after", perturbed, entities)

    feature_columns = [c for c in before.columns if "__" in c]
    changed_rows = 0
    for table, key in HISTORY_TABLES.items():
        columns = [c for c in feature_columns if c.startswith(f"{table}__")]
        differs = pl.any_horizontal([before[c].ne_missing(after[c]) for c in columns])
        changed = before.filter(differs)
        changed_rows += changed.height
        # A change is explained by another changed flight with the same key that had
        # departed by the row's prediction time; a flight can never explain its own row.
        explained = (
            changed.join(flipped.select(key, "departed_at", "flight_id"), on=key, suffix="_changed")
            .filter(
                (pl.col("departed_at") <= pl.col("event_timestamp"))
                & (pl.col("flight_id_changed") != pl.col("flight_id"))
            )
            .select("flight_id")
            .unique()
        )
        unexplained = changed.join(explained, on="flight_id", how="anti")
        assert unexplained.is_empty(), (table, unexplained.head(5))
    assert changed_rows > 100  # the perturbation did reach later flights


def test_a_feature_table_that_fails_its_checks_keeps_the_previous_version(built_home, tmp_path):
    built = built_home.home
    home = tmp_path / "home"
    files = StorageResource(home=str(home)).files(lifecycle().scope)
    files.features_dir.mkdir(parents=True)
    shutil.copy(built / "warehouse.duckdb", home / "warehouse.duckdb")
    good = files.feature_table_path("weather_hourly")
    shutil.copy(_files(built_home).feature_table_path("weather_hourly"), good)
    before = good.read_bytes()
    spec = lifecycle().use_case.table("weather_hourly")
    strict = spec.model_copy(
        update={"expect": spec.expect.model_copy(update={"ranges": {"visibility_mi": (0, 5)}})}
    )
    result = dg.materialize(
        [build_feature_table_asset(lifecycle().use_case, strict, lifecycle().scope)],
        resources=build_resources(Environment.LOCAL, home=home),
        raise_on_error=False,
    )
    assert not result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"schema": True, "null_share": True, "value_ranges": False, "freshness": True}
    error = result.get_step_failure_events()[0].event_specific_data.error
    assert "failed its checks ['value_ranges']; the previous version is kept" in (
        error.cause.message
    )
    assert good.read_bytes() == before
    assert [p.name for p in good.parent.iterdir()] == ["weather_hourly.parquet"]


def _feast(home: Path, use_case: str, *args: str) -> str:
    """`facilflow feast -u <use case> <args>` over `home`; its output."""
    # The feast CLI runs in a process of its own, whose output click's runner cannot see:
    # the command is run the same way, as a subprocess.
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "facilflow"),
            "--home",
            str(home),
            "feast",
            "-u",
            use_case,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_feast_apply_and_materialize_work_from_the_cli_on_one_use_cases_project(
    built_home, tmp_path
):
    """The `feast` CLI on a use case's own project, through a generated repository: no
    file is edited by hand, and another use case's project is not touched."""
    home = tmp_path / "home"
    built = _files(built_home)
    files = StorageResource(home=str(home)).files(lifecycle().scope)
    shutil.copytree(built.features_dir, files.features_dir)
    other = build_resources(Environment.LOCAL, home=home)["feast"]
    other_scope = lifecycle("arrival_delay").scope
    assert not other.registry_path(other_scope).exists()

    assert "Created feature service flight_delay_v1" in _feast(home, "flight_delay", "apply")
    _feast(
        home,
        "flight_delay",
        "materialize",
        "2013-06-01T00:00:00",
        "2013-06-02T00:00:00",
        "--views",
        "weather_hourly",
        "--views",
        "carrier_history",
    )
    incremental = _feast(
        home,
        "flight_delay",
        "materialize-incremental",
        "2013-06-03T00:00:00",
        "--views",
        "weather_hourly",
        "--views",
        "carrier_history",
    )
    assert "2013-06-02 00:00:00" in incremental  # resumed where the first load ended
    assert "flight_delay_v1" in _feast(home, "flight_delay", "feature-services", "list")
    assert not other.registry_path(other_scope).exists()

    store = other.feature_store(lifecycle().scope)  # the same registry the assets use
    online = store.get_online_features(
        features=["weather_hourly:temperature_f"], entity_rows=[{"origin_airport_code": "LGA"}]
    ).to_dict()
    weather = pl.read_parquet(built.feature_table_path("weather_hourly"))
    expected = weather.filter(
        (pl.col("airport_code") == "LGA")
        & (pl.col("reported_at") <= datetime(2013, 6, 3, tzinfo=UTC))
    ).sort("reported_at")["temperature_f"][-1]
    assert online["temperature_f"] == [expected]


def test_the_feast_command_names_an_unknown_use_case(built_home):
    result = CliRunner().invoke(
        main, ["--home", str(built_home.home), "feast", "-u", "no_such_case", "apply"]
    )
    assert result.exit_code != 0
    assert "tenant 'demo' runs no use case 'no_such_case'" in result.output


def test_the_prod_online_store_on_redis_serves_latest_values(built_home):
    """Production's Redis online store, against the real Redis on 127.0.0.1:6379."""
    home = built_home.home
    scope = ModelScope(f"test_{uuid.uuid4().hex[:10]}", "flight_delay")
    feast = redis_feast(StorageResource(home=str(home)))
    client = redis.Redis(host="127.0.0.1", port=6379)
    pattern = f"*{scope.feast_project}".encode()
    feast.apply(scope, repo_contents(lifecycle().use_case, _files(built_home).features_dir))
    store = feast.feature_store(scope)
    try:
        end = datetime(2013, 7, 1, tzinfo=UTC)
        store.materialize(
            start_date=end - timedelta(days=2), end_date=end, feature_views=["weather_hourly"]
        )
        assert any(True for _ in client.scan_iter(pattern))
        online = store.get_online_features(
            features=["weather_hourly:pressure_mb", "weather_hourly:wind_speed_mean_3h"],
            entity_rows=[{"origin_airport_code": "EWR"}],
        ).to_dict()
        weather = pl.read_parquet(_files(built_home).feature_table_path("weather_hourly"))
        latest = (
            weather.filter((pl.col("airport_code") == "EWR") & (pl.col("reported_at") <= end))
            .sort("reported_at")
            .row(-1, named=True)
        )
        assert online["pressure_mb"] == [latest["pressure_mb"]]
        assert online["wind_speed_mean_3h"] == [latest["wind_speed_mean_3h"]]
    finally:
        store.teardown()
    assert not any(True for _ in client.scan_iter(pattern))
