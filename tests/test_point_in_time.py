"""Point-in-time correctness of the polars offline store (in this process, and split by
entity over Ray: a real local instance with two CPUs) and of Feast's DuckDB store.

The stores run the same retrievals on the same repository and are compared with a naive
oracle that scans every feature row for every entity row.
"""

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import polars as pl
import pytest
from feast import (
    Entity,
    FeatureService,
    FeatureStore,
    FeatureView,
    Field,
    FileSource,
    RepoConfig,
    ValueType,
)
from feast.types import Float64, String, UnixTimestamp

from facilflow_assets.features.feast_assets import MaterializeConfig, load_online_store
from facilflow_assets.features.polars_offline_store import PolarsRetrievalJob
from resources import RayResource
from resources.feast import POLARS_OFFLINE_STORE

T0 = datetime(2013, 5, 1, tzinfo=UTC)
TTL = timedelta(hours=2)
SENSORS = ["s0", "s1", "s2", "s3"]
ON_RAY = "polars_on_ray"
STORES = {
    "polars": {"type": POLARS_OFFLINE_STORE},
    ON_RAY: {"type": POLARS_OFFLINE_STORE, "ray_address": "local"},
    "duckdb": {"type": "duckdb"},
}
# The store on Ray starts Ray: the suite's slow tier.
STORE_PARAMS = [pytest.param(n, marks=pytest.mark.slow) if n == ON_RAY else n for n in STORES]


def _feature_rows(rng: random.Random) -> pl.DataFrame:
    """Readings every 20-100 minutes; some event times repeat with a later created time."""
    rows = []
    for sensor in SENSORS:
        at = T0 + timedelta(minutes=rng.randint(0, 60))
        for _ in range(40):
            created = at + timedelta(minutes=1)
            rows.append((sensor, at, created, rng.random()))
            if rng.random() < 0.2:  # a correction: same event time, created later
                rows.append((sensor, at, created + timedelta(minutes=5), rng.random()))
            at += timedelta(minutes=rng.randint(20, 100))
    frame = pl.DataFrame(
        rows, schema=["sensor_key", "event_ts", "created_ts", "value"], orient="row"
    )
    return frame.with_columns(
        pl.col("event_ts", "created_ts").cast(pl.Datetime("us", "UTC")),
        observed_at=pl.col("event_ts").cast(pl.Datetime("us", "UTC")),
    ).sample(fraction=1.0, shuffle=True, seed=7)


def _entity_rows(features: pl.DataFrame, rng: random.Random) -> pd.DataFrame:
    """Random times plus the edge cases: exact event times, exact TTL boundaries, one
    microsecond past them, times before any reading, and a sensor that never reported."""
    times = features["event_ts"].to_list()
    rows = []
    for i in range(300):
        sensor = rng.choice([*SENSORS, "never_seen"])
        kind = i % 5
        base = rng.choice(times)
        at = {
            0: T0 + timedelta(minutes=rng.randint(-120, 60 * 60)),
            1: base,
            2: base + TTL,
            3: base + TTL + timedelta(microseconds=1),
            4: T0 - timedelta(hours=rng.randint(1, 48)),
        }[kind]
        neighbour = rng.choice(SENSORS)
        rows.append(
            {"row_id": i, "sensor": sensor, "neighbour_sensor": neighbour, "event_timestamp": at}
        )
    return pd.DataFrame(rows)


def _oracle(features: pl.DataFrame, sensor: str, at: datetime, ttl: timedelta | None):
    """The latest (event, then created) reading of `sensor` in [at - ttl, at]; None if none."""
    best = None
    for row in features.iter_rows(named=True):
        if row["sensor_key"] != sensor or row["event_ts"] > at:
            continue
        if ttl is not None and row["event_ts"] < at - ttl:
            continue
        if best is None or (row["event_ts"], row["created_ts"]) > (
            best["event_ts"],
            best["created_ts"],
        ):
            best = row
    return best


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("pit")
    rng = random.Random(20130501)
    features = _feature_rows(rng)
    path = root / "readings.parquet"
    features.write_parquet(path)
    sensor = Entity(name="sensor", join_keys=["sensor"], value_type=ValueType.STRING)
    source = FileSource(
        name="readings_source",
        path=str(path),
        timestamp_field="event_ts",
        created_timestamp_column="created_ts",
        field_mapping={"sensor_key": "sensor"},
    )
    schema = [
        Field(name="sensor", dtype=String),
        Field(name="value", dtype=Float64),
        Field(name="observed_at", dtype=UnixTimestamp),
    ]
    recent = FeatureView(name="recent", entities=[sensor], ttl=TTL, schema=schema, source=source)
    forever = FeatureView(
        name="forever", entities=[sensor], ttl=timedelta(0), schema=schema, source=source
    )
    neighbour = recent.with_name("neighbour").with_join_key_map({"sensor": "neighbour_sensor"})
    # Every projection is aliased: Feast 0.67 cannot compare a service's projections when
    # only some have an alias (None < str).
    service = FeatureService(
        name="readings_v1",
        features=[recent.with_name("recent"), forever.with_name("forever"), neighbour],
    )
    return {
        "root": root,
        "features": features,
        "entities": _entity_rows(features, rng),
        "objects": [sensor, source, recent, forever, service],
    }


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """One Ray instance for the module, which the store's "local" address joins."""
    ray_cluster = RayResource(num_cpus=2, storage_path=str(tmp_path_factory.mktemp("ray")))
    with ray_cluster.session():
        yield


def _with_ray_if_needed(request: pytest.FixtureRequest, store: str) -> None:
    if store == ON_RAY:
        request.getfixturevalue("local_ray")


def _store(repository: dict, store: str, state: Path | None = None) -> FeatureStore:
    """The repository's store; its registry and online store in `state`, if given."""
    root: Path = repository["root"]
    state = state or root
    config = RepoConfig(
        project="pit_test",
        provider="local",
        registry=str(state / f"registry_{store}.db"),
        online_store={"type": "sqlite", "path": str(state / "online.db")},
        offline_store=STORES[store],
        entity_key_serialization_version=3,
        repo_path=root,
    )
    store = FeatureStore(config=config)
    store.apply(repository["objects"])
    return store


@pytest.fixture(scope="module", params=STORE_PARAMS)
def retrieved(request, repository) -> pd.DataFrame:
    _with_ray_if_needed(request, request.param)
    store = _store(repository, request.param)
    service = store.get_feature_service("readings_v1")
    frame = store.get_historical_features(
        entity_df=repository["entities"], features=service, full_feature_names=True
    ).to_df()
    return frame.sort_values("row_id").reset_index(drop=True)


def test_every_value_is_the_oracles(retrieved, repository):
    features = repository["features"]
    assert len(retrieved) == len(repository["entities"])
    for row in retrieved.itertuples():
        at = row.event_timestamp.to_pydatetime()
        for view, sensor, ttl in [
            ("recent", row.sensor, TTL),
            ("forever", row.sensor, None),
            ("neighbour", row.neighbour_sensor, TTL),
        ]:
            expected = _oracle(features, sensor, at, ttl)
            value = getattr(row, f"{view}__value")
            if expected is None:
                assert pd.isna(value), (view, row)
            else:
                assert value == expected["value"], (view, row)


def test_no_value_is_from_after_the_entity_row_or_older_than_the_ttl(retrieved):
    observed = retrieved["recent__observed_at"]
    matched = observed.notna()
    assert matched.sum() > 50
    assert (observed[matched] <= retrieved["event_timestamp"][matched]).all()
    assert (observed[matched] >= retrieved["event_timestamp"][matched] - TTL).all()


def test_the_ttl_boundary_is_inclusive_and_one_microsecond_past_is_not(retrieved, repository):
    readings = set(repository["features"].select("sensor_key", "event_ts").iter_rows())
    at_boundary = retrieved[
        [
            (s, t - TTL) in readings
            for s, t in zip(retrieved["sensor"], retrieved["event_timestamp"], strict=True)
        ]
    ]
    just_past = retrieved[
        [
            (s, t - TTL - timedelta(microseconds=1)) in readings
            for s, t in zip(retrieved["sensor"], retrieved["event_timestamp"], strict=True)
        ]
    ]
    assert len(at_boundary) > 0 and len(just_past) > 0
    # A reading exactly TTL before the row is still eligible...
    assert at_boundary["recent__observed_at"].notna().all()
    # ...and one a microsecond older is not (a newer one may still match).
    older = just_past["event_timestamp"] - TTL
    assert not (just_past["recent__observed_at"] < older).any()


def test_rows_before_any_reading_and_unknown_sensors_get_nulls(retrieved, repository):
    first = repository["features"]["event_ts"].min()
    early = retrieved[retrieved["event_timestamp"] < first]
    unknown = retrieved[retrieved["sensor"] == "never_seen"]
    assert len(early) > 0 and len(unknown) > 0
    assert early["forever__value"].isna().all()
    assert unknown["recent__value"].isna().all() and unknown["forever__value"].isna().all()


def test_a_later_created_correction_wins_over_the_original(retrieved, repository):
    features = repository["features"]
    corrected = features.filter(pl.struct("sensor_key", "event_ts").is_duplicated())
    assert corrected.height > 0
    latest = corrected.sort("created_ts").unique(["sensor_key", "event_ts"], keep="last")
    hits = 0
    for correction in latest.iter_rows(named=True):
        exact = retrieved[
            (retrieved["sensor"] == correction["sensor_key"])
            & (retrieved["event_timestamp"] == correction["event_ts"])
        ]
        for value in exact["recent__value"]:
            assert value == correction["value"]
            hits += 1
    assert hits > 0


@pytest.mark.slow
def test_a_ray_address_splits_the_join_over_ray(repository, local_ray):
    store = _store(repository, ON_RAY)
    job = store.get_historical_features(
        entity_df=repository["entities"],
        features=store.get_feature_service("readings_v1"),
        full_feature_names=True,
    )
    assert job.to_df().shape[0] == len(repository["entities"])
    assert isinstance(job, PolarsRetrievalJob) and job.ray_nodes == 1  # this machine's node


@pytest.mark.parametrize("other", [p for p in STORE_PARAMS if p != "polars"])
def test_every_store_returns_the_polars_stores_frame(repository, other, request):
    _with_ray_if_needed(request, other)
    polars_frame, other_frame = (
        _retrieve(repository, name, repository["entities"]) for name in ("polars", other)
    )
    assert sorted(polars_frame.columns) == sorted(other_frame.columns)
    pd.testing.assert_frame_equal(
        polars_frame, other_frame[polars_frame.columns], check_dtype=False
    )


@pytest.mark.parametrize("store_name", [p for p in STORE_PARAMS if p != "duckdb"])
def test_materialization_loads_the_latest_row_per_entity(repository, store_name, tmp_path, request):
    _with_ray_if_needed(request, store_name)
    store = _store(repository, store_name, state=tmp_path)
    features = repository["features"]
    end = features["event_ts"].max() + timedelta(seconds=1)
    store.materialize(start_date=T0 - timedelta(days=1), end_date=end, feature_views=["forever"])
    online = store.get_online_features(
        features=["forever:value", "forever:observed_at"],
        entity_rows=[{"sensor": s} for s in SENSORS],
    ).to_dict()
    for sensor, value in zip(SENSORS, online["value"], strict=True):
        assert value == _oracle(features, sensor, end, None)["value"]


def test_a_first_online_load_keeps_the_values_within_the_ttl_of_the_newest_row(
    repository, tmp_path
):
    """The online_store asset's first load: a view with a TTL gets what is within it at its
    newest row (a sensor last heard of earlier is not served); one without, every sensor."""
    store = _store(repository, "polars", state=tmp_path)
    result = load_online_store(dg.build_asset_context(), MaterializeConfig(), store, "sqlite")
    assert sorted(result.metadata["first_loads"].data) == ["forever", "recent"]
    features = repository["features"]
    newest = features["event_ts"].max()
    end = newest + timedelta(microseconds=1)
    online = store.get_online_features(
        features=["recent:value", "forever:value"],
        entity_rows=[{"sensor": s} for s in SENSORS],
        full_feature_names=True,
    ).to_dict()
    latest = [_oracle(features, sensor, end, None) for sensor in SENSORS]
    assert online["forever__value"] == [row["value"] for row in latest]
    within = [row["value"] if row["event_ts"] >= newest - TTL else None for row in latest]
    assert online["recent__value"] == within
    assert any(v is None for v in within) and any(v is not None for v in within)


def _retrieve(repository: dict, store_name: str, entities: pd.DataFrame) -> pd.DataFrame:
    store = _store(repository, store_name)
    frame = store.get_historical_features(
        entity_df=entities,
        features=store.get_feature_service("readings_v1"),
        full_feature_names=True,
    ).to_df()
    return frame.sort_values("row_id").reset_index(drop=True)


ENTITY_TIME_FORMS = {
    "iso_text_with_offsets": lambda t: [
        (s.tz_convert("Europe/Berlin") if i % 2 else s).isoformat(timespec="microseconds")
        for i, s in enumerate(t)
    ],
    "naive": lambda t: t.dt.tz_localize(None),
    "another_time_zone": lambda t: t.dt.tz_convert("America/New_York"),
    "nanoseconds": lambda t: t.astype("datetime64[ns, UTC]"),
}


@pytest.mark.parametrize("form", sorted(ENTITY_TIME_FORMS))
def test_entity_times_in_any_form_feast_accepts_give_the_duckdb_stores_rows(repository, form):
    entities = repository["entities"].copy()
    times = pd.to_datetime(entities["event_timestamp"], utc=True)
    entities["event_timestamp"] = ENTITY_TIME_FORMS[form](times)
    polars_frame = _retrieve(repository, "polars", entities)
    duckdb_frame = _retrieve(repository, "duckdb", entities)
    assert polars_frame["recent__value"].notna().sum() > 50
    pd.testing.assert_frame_equal(
        polars_frame, duckdb_frame[polars_frame.columns], check_dtype=False
    )


def test_a_time_a_nanosecond_past_the_ttl_gets_no_expired_value(repository):
    readings = repository["features"].sort("event_ts")
    at = pd.to_datetime(readings["event_ts"].to_pandas(), utc=True).astype("datetime64[ns, UTC]")
    ttl = pd.Timedelta(TTL)
    entities = pd.DataFrame(
        {
            "row_id": range(2 * len(at)),
            "sensor": [*readings["sensor_key"], *readings["sensor_key"]],
            "neighbour_sensor": "s0",
            "event_timestamp": [*(at + ttl), *(at + ttl + pd.Timedelta(nanoseconds=1))],
        }
    )
    frame = _retrieve(repository, "polars", entities)
    observed = pd.to_datetime(frame["recent__observed_at"], utc=True)
    at_boundary, past = frame.index < len(at), frame.index >= len(at)
    assert observed[at_boundary].notna().all()
    matched = past & observed.notna().to_numpy()
    assert (observed[matched] >= frame["event_timestamp"][matched] - ttl).all()
    assert (~matched[past]).sum() > 0  # some readings had no newer one within the TTL


def test_entity_times_that_are_not_times_are_named(repository):
    entities = repository["entities"].copy()
    entities["event_timestamp"] = "yesterday-ish"
    with pytest.raises(ValueError, match="entity column 'event_timestamp' must hold times"):
        _retrieve(repository, "polars", entities)
