"""Cluster mode: a real two-node Ray cluster on loopback (`ray start --head` and a second
`ray start --address`, separate processes with CPUs of their own). The feature table,
training set, training, batch scoring and endpoint assets get its address from their
resources' config, as in prod, and their work is found on both nodes (Ray's own record of
actors; the nodes of the tasks) with the answers they give in one process."""

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import ray
import requests

from facilflow_assets.environment import Environment
from facilflow_assets.resource_map import build_resources
from resources import FeastResource, RayResource, ServingResource
from resources.ray_cluster import LOCAL_RAY_ENV
from resources.serving import LOCAL_HEAD_CPUS
from tests.lifecycle import lifecycle
from tests.mlflow_server import free_port, stop_process_group

pytestmark = pytest.mark.slow

FLIGHT_DELAY = lifecycle()
BATCH_DAY = FLIGHT_DELAY.use_case.demo_days.seen.isoformat()

WORKER_CPUS = 1
JOIN_TIMEOUT_S = 60
# Three trials at once fill the head's two CPUs and the worker's one.
QUICK_SEARCH = {"num_trials": 3, "max_rounds": 10, "grace_rounds": 10, "num_workers": 2}


class TwoNodes:
    """The demo's home served from a head of its own, joined by a second node."""

    def __init__(self, home: Path):
        self.home = home
        self.resources = build_resources(Environment.LOCAL, home=home)
        self.serving = ServingResource(
            http_port=free_port(),
            state_dir=str(home / "serve"),
            request_log_dir=str(home / "serving" / "requests"),
        )
        self.address = self.serving.cluster_address()  # starts the head
        self.worker = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("ray")),
                "start",
                "--block",
                "--address",
                self.address,
                "--node-ip-address",
                "127.0.0.1",
                "--num-cpus",
                str(WORKER_CPUS),
                "--disable-usage-stats",
            ],
            stdout=(home / "ray-worker.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **LOCAL_RAY_ENV},
        )
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while len(self.alive_nodes()) < 2:
            assert self.worker.poll() is None and time.monotonic() < deadline, (
                home / "ray-worker.log"
            ).read_text()[-2000:]
            time.sleep(1)

    def alive_nodes(self) -> dict[str, float]:
        """Node id -> CPUs of the live nodes."""
        with self._connected():
            return {n["NodeID"]: n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]}

    def nodes_of(self, class_fragment: str) -> set[str]:
        """Nodes that ran an actor whose class name contains `class_fragment` (Ray keeps
        finished actors in its table)."""
        with self._connected():
            actors = ray._private.state.actors().values()
            return {a["Address"]["NodeID"] for a in actors if class_fragment in a["ActorClassName"]}

    @contextlib.contextmanager
    def _connected(self):
        ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        try:
            yield
        finally:
            ray.shutdown()
            os.environ.pop("RAY_ADDRESS", None)  # set by ray.init; the next init is local

    def stop(self) -> None:
        stop_process_group(self.worker)
        self.serving.stop_local_cluster()


@pytest.fixture(scope="module")
def cluster(built_home, tmp_path_factory):
    os.environ.update(LOCAL_RAY_ENV)  # the local cluster runs without token authentication
    home = tmp_path_factory.mktemp("two-nodes") / "facilflow"
    shutil.copytree(built_home.home, home)
    nodes = TwoNodes(home)
    try:
        yield nodes
    finally:
        nodes.stop()


def test_the_cluster_has_two_nodes_with_their_own_cpus(cluster):
    assert sorted(cluster.alive_nodes().values()) == [WORKER_CPUS, LOCAL_HEAD_CPUS]


def test_tuning_and_training_run_on_both_nodes_given_only_the_clusters_address(cluster):
    resources = {
        **cluster.resources,
        "ray_cluster": RayResource(
            address=cluster.address, storage_path=str(cluster.home / "ray-checkpoints")
        ),
    }
    result = dg.materialize(
        [FLIGHT_DELAY.asset("trained_model")],
        resources=resources,
        run_config={"ops": {FLIGHT_DELAY.op("trained_model"): {"config": QUICK_SEARCH}}},
    )
    [event] = result.get_asset_materialization_events()
    metadata = event.event_specific_data.materialization.metadata
    assert metadata["trials"].value == QUICK_SEARCH["num_trials"]
    nodes = set(cluster.alive_nodes())
    assert cluster.nodes_of("ImplicitFunc") == nodes  # Tune's trials (function trainables)
    assert cluster.nodes_of("RayTrainWorker") == nodes  # the data-parallel fit


def test_the_endpoints_replicas_serve_from_both_nodes(cluster):
    resources = {**cluster.resources, "serving": cluster.serving}
    result = dg.materialize(
        [FLIGHT_DELAY.asset("prediction_endpoint")],
        resources=resources,
        run_config={
            "ops": {
                FLIGHT_DELAY.op("prediction_endpoint"): {
                    "config": {"num_replicas": 2, "max_replicas_per_node": 1}
                }
            }
        },
    )
    [event] = result.get_asset_materialization_events()
    metadata = event.event_specific_data.materialization.metadata
    url, sample = metadata["url"].value, metadata["sample_request"].value
    assert cluster.nodes_of("prediction_endpoint") == set(cluster.alive_nodes())
    answers = [requests.post(url, json=sample, timeout=30) for _ in range(20)]
    assert {a.status_code for a in answers} == {200}


def test_a_days_batch_scores_are_computed_on_both_nodes_and_equal_the_in_process_ones(cluster):
    def scores_of_the_day(on_ray_cluster: bool) -> tuple[pl.Series, dict]:
        op = FLIGHT_DELAY.op("batch_predictions")
        result = dg.materialize(
            [FLIGHT_DELAY.asset("batch_predictions")],
            partition_key=BATCH_DAY,
            resources={**cluster.resources, "ray_cluster": on_the_cluster},
            run_config={"ops": {op: {"config": {"on_ray_cluster": on_ray_cluster}}}},
        )
        [event] = result.get_asset_materialization_events()
        metadata = event.event_specific_data.materialization.metadata
        return pl.read_parquet(metadata["path"].value)[FLIGHT_DELAY.use_case.score], metadata

    on_the_cluster = RayResource(
        address=cluster.address, storage_path=str(cluster.home / "ray-checkpoints")
    )
    in_process, local = scores_of_the_day(False)
    on_cluster, spread = scores_of_the_day(True)
    assert (local["ray_nodes"].value, spread["ray_nodes"].value) == (0, 2)
    assert in_process.len() > 500
    assert on_cluster.to_list() == in_process.to_list()


def _materialized(asset: dg.AssetsDefinition, resources: dict) -> tuple[pl.DataFrame, dict]:
    """The asset's written table and its metadata, materialized with `resources`."""
    result = dg.materialize([asset], resources=resources)
    [event] = result.get_asset_materialization_events()
    metadata = event.event_specific_data.materialization.metadata
    return pl.read_parquet(metadata["path"].value), metadata


def _in_order(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(frame.columns, nulls_last=True)


def test_feature_tables_split_by_entity_over_both_nodes_equal_the_local_ones(cluster):
    on_the_cluster = {
        **cluster.resources,
        "ray_cluster": RayResource(
            address=cluster.address, storage_path=str(cluster.home / "ray-checkpoints")
        ),
    }
    spread = {}
    for table in FLIGHT_DELAY.use_case.tables:
        asset = FLIGHT_DELAY.asset(table.name)
        local, _ = _materialized(asset, cluster.resources)
        distributed, metadata = _materialized(asset, on_the_cluster)
        assert local.height > 0, table.name
        assert _in_order(distributed).equals(_in_order(local), null_equal=True), table.name
        spread[table.name] = (metadata["ray_partitions"].value, metadata["ray_nodes"].value)
    # The cluster's three CPUs, on both nodes; route features are split by origin airport
    # (its departures per origin span routes), of which the flights have three.
    assert spread["plane_history"] == (3, 2), spread
    assert spread["route_history"][0] <= 3, spread


def test_the_training_set_joined_over_both_nodes_equals_the_local_one(cluster):
    asset = FLIGHT_DELAY.asset("training_set")
    local, local_metadata = _materialized(asset, cluster.resources)
    feast_on_cluster = FeastResource(
        storage=cluster.resources["storage"], ray_address=cluster.address
    )
    joined, metadata = _materialized(asset, {**cluster.resources, "feast": feast_on_cluster})
    assert (local_metadata["join_ray_nodes"].value, metadata["join_ray_nodes"].value) == (0, 2)
    assert local.height > 100_000
    assert joined.columns == local.columns
    assert _in_order(joined).equals(_in_order(local), null_equal=True)
