"""Feature tables split by entity over Ray: which columns a table can be split by, and the
split tables equal to the ones computed in one process (a real local Ray instance with two
CPUs; the two-node cluster runs the assets in tests/test_ray_cluster.py)."""

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from facilflow_assets.feature_spec import FeatureTableSpec
from facilflow_assets.features.cluster_tables import compute_on_cluster, partition_columns
from facilflow_assets.features.engine import compute_features
from facilflow_assets.features.entity_partitions import (
    PARTITION,
    partition_of,
    run_on_cluster,
    split,
)
from resources import RayResource

T0 = datetime(2013, 3, 1, tzinfo=UTC)
STATIONS = 120
COLUMNS = {"station": "string", "region": "string", "at": "timestamp", "value": "float"}
EVERY_KIND = [
    {"name": "mean_3", "kind": "rolling", "column": "value", "stat": "mean", "window": 3},
    {"name": "std_6h", "kind": "rolling", "column": "value", "stat": "std", "window": "6h"},
    {"name": "previous", "kind": "lag", "column": "value", "steps": 1},
    {"name": "an_hour_ago", "kind": "lag", "column": "value", "by": "1h"},
    {"name": "count_4h", "kind": "aggregate", "agg": "count", "window": "4h"},
    {"name": "sum_4h", "kind": "aggregate", "agg": "sum", "column": "value", "window": "4h"},
    {"name": "per_mean", "kind": "ratio", "numerator": "value", "denominator": "mean_3"},
    {"name": "hour", "kind": "time", "column": "at", "part": "hour"},
]


def _table(features: list[dict]) -> FeatureTableSpec:
    return FeatureTableSpec.model_validate(
        {
            "name": "readings",
            "description": "test",
            "source": {
                "model": "s/r",
                "entity": ["station"],
                "timestamp": "at",
                "columns": COLUMNS,
            },
            "keep": ["value"],
            "features": features,
        }
    )


def _per_region(group_by: list[str]) -> dict:
    return {
        "name": "region_1h",
        "kind": "aggregate",
        "agg": "count",
        "window": "1h",
        "group_by": group_by,
    }


def _readings(rows: int = 20_000, seed: int = 3) -> pl.DataFrame:
    """Stations in four regions (each station in one), readings at irregular times with
    nulls and repeated times, in arrival order."""
    rng = np.random.default_rng(seed)
    station = rng.integers(0, STATIONS, rows)
    minutes = rng.integers(0, 60 * 24 * 20, rows)
    value = rng.normal(size=rows)
    return pl.DataFrame(
        {
            "station": [f"s{s}" for s in station],
            "region": [f"r{s % 4}" for s in station],
            "at": [T0 + timedelta(minutes=int(m)) for m in minutes],
            "value": np.where(rng.random(rows) < 0.05, np.nan, value),
        }
    ).with_columns(pl.col("value").fill_nan(None), pl.col("at").cast(pl.Datetime("us", "UTC")))


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    ray_cluster = RayResource(num_cpus=2, storage_path=str(tmp_path_factory.mktemp("ray")))
    with ray_cluster.session():  # one instance for the module; each use joins it
        yield ray_cluster


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        ([], ["station"]),
        ([_per_region(["station", "region"])], ["station"]),
        ([_per_region(["region"])], ["region"]),  # every station lies in one region
        ([_per_region([])], []),  # over the whole table: no split keeps it whole
    ],
)
def test_a_table_is_split_by_what_every_window_groups_by(features, expected):
    assert partition_columns(_table([*EVERY_KIND, *features]), _readings()) == expected


def test_a_table_whose_entities_cross_the_aggregates_groups_is_not_split():
    readings = _readings().with_columns(
        region=pl.when(pl.col("at").dt.day() < 10).then(pl.lit("north")).otherwise(pl.lit("south"))
    )
    assert partition_columns(_table([_per_region(["region"])]), readings) == []


@pytest.mark.slow
def test_every_node_puts_a_row_in_the_same_partition(local_ray):
    readings = _readings(2_000)
    here = readings.select(partition_of(["station"], 5))[PARTITION]
    [there], _ = run_on_cluster(_partitions_of_stations, [(readings,)])
    assert there.to_list() == here.to_list()
    parts = split(readings, ["station"], 5)
    assert [p.height for p in parts] == here.value_counts().sort(PARTITION)["count"].to_list()
    stations = [set(p["station"]) for p in parts]
    assert sum(len(s) for s in stations) == readings["station"].n_unique()  # none in two


def _partitions_of_stations(frame: pl.DataFrame) -> pl.Series:
    return frame.select(partition_of(["station"], 5))[PARTITION]


@pytest.mark.slow
@pytest.mark.parametrize("aggregate_over", [None, ["region"]])
def test_a_table_split_over_ray_equals_the_one_computed_in_one_process(local_ray, aggregate_over):
    features = [*EVERY_KIND, *([_per_region(aggregate_over)] if aggregate_over else [])]
    spec, readings = _table(features), _readings()
    run = compute_on_cluster(spec, readings, local_ray)
    assert run.partitions > 1 and run.nodes == 1
    assert run.partitioned_by == (aggregate_over or ["station"])
    assert run.frame.equals(compute_features(spec, readings.lazy()))
    assert run.frame["std_6h"].null_count() < run.frame.height
