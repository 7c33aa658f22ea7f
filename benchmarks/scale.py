"""Benchmark: the data plane at 1x, 10x and 100x the flight year, in one process and on a
two-node Ray cluster.

What is measured, at each scale and in each mode (`local`: the step's process, as without
a Ray address; `cluster`: a two-node Ray cluster on loopback, a head with two CPUs and a
worker with one, as a Ray address configures it):

  features - every feature table of `flight_delay`, read from the warehouse, computed
             (`compute_features`, or `compute_on_cluster` split by entity) and written;
  join     - the training set through Feast: `get_historical_features` for every departed
             flight with the feature service's features (the polars offline store; with
             `ray_address` on the cluster), to the frame the asset writes;
  scoring  - the Production model's probabilities for every row of that training set
             (`score`, or `score_on_cluster`, one task per CPU).

Each stage's wall time, and the peak resident memory of its process tree, sampled every
0.05 s (in cluster mode with the cluster's node processes, whose idle memory is reported
apart as `cluster_idle_gb`). The join's figure is also given as its growth over the
process's memory before the join (`join_gb`, after a warm-up join of 1,000 rows has loaded
the registry and the stores' modules) and as a multiple of the training set's in-memory
size (`join_over_training_set`).

How: the scaled year comes from the demo's raw tables (`facilflow_assets.raw.scaled_year`:
each copy has flights, planes, origins and weather of its own); dbt builds its warehouse
(untimed, reported as `dbt_s`). Every stage runs in a process of its own, so each peak is
its own, and one that passes `--memory-cap-gb` (by default three quarters of the memory
free at the start) is stopped and reported as over the cap instead of taking the machine's
memory: the later stages of that scale and mode are then skipped, and `equal` compares what
both modes wrote. The rows of every cluster stage are compared with the local ones (`equal`).

Needs the working directory `make demo` builds (its raw tables and Production model); run
from the project root (`--rows N`, the first N flights, and `--factors 1,2` make a smoke
run):

    .venv/bin/python benchmarks/scale.py [--home DIR] [--factors 1,10,100]
        [--modes local,cluster] [--rows N] [--memory-cap-gb G] [--workdir DIR]

The last line of output is one JSON object with the figures.
"""

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import polars as pl
import psutil

from facilflow_assets.atomic_files import write_parquet_atomic
from facilflow_assets.environment import LOCAL_HOME, PROJECT_ROOT
from facilflow_assets.loopback import free_port, stop_process_group
from facilflow_assets.raw.scaled_year import scale_year
from facilflow_assets.raw.schemas import RAW_TABLES
from facilflow_assets.scope import ModelScope
from facilflow_assets.tenants import DEFAULT_TENANT
from facilflow_assets.use_case import load_use_case, use_case_path
from resources.ray_cluster import LOCAL_RAY_ENV

SCOPE = ModelScope(DEFAULT_TENANT, "flight_delay")
USE_CASE = load_use_case(use_case_path(SCOPE.use_case))
STAGES = ("features", "join", "scoring")
GIB = 2**30
SAMPLE_S = 0.05
HEAD_CPUS, WORKER_CPUS = 2, 1
NODES_TIMEOUT_S = 90
DBT = Path(sys.executable).with_name("dbt")
RAY = Path(sys.executable).with_name("ray")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=LOCAL_HOME, help="the demo's directory")
    parser.add_argument("--factors", default="1,10,100", help="copies of the year, by comma")
    parser.add_argument("--modes", default="local,cluster", help="local, cluster or both")
    parser.add_argument("--rows", type=int, help="the first N flights of the year only")
    parser.add_argument(
        "--memory-cap-gb", type=float, help="stop a stage above (default: 3/4 of what is free)"
    )
    parser.add_argument("--workdir", type=Path, help="where scaled years go (a temporary one)")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)  # a child's stage
    parser.add_argument("--scaled-home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.stage:
        print(json.dumps(run_stage(arguments)))
        return
    if arguments.memory_cap_gb is None:
        arguments.memory_cap_gb = round(0.75 * psutil.virtual_memory().available / GIB, 1)
    modes = arguments.modes.split(",")
    factors = [int(f) for f in arguments.factors.split(",")]
    with contextlib.ExitStack() as stack:
        workdir = arguments.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        cluster = stack.enter_context(TwoNodes(workdir)) if "cluster" in modes else None
        figures = {
            f"{factor}x": measure_scale(arguments, workdir, factor, modes, cluster)
            for factor in factors
        }
    print(json.dumps({"memory_cap_gb": arguments.memory_cap_gb, **figures}))


def measure_scale(arguments, workdir: Path, factor: int, modes: list[str], cluster) -> dict:
    """Every stage in every mode on the year `factor` times over."""
    homes = {mode: workdir / f"{factor}x-{mode}" for mode in modes}
    flights, dbt_s = build_scaled_year(arguments.home, homes[modes[0]], factor, arguments.rows)
    for mode in modes[1:]:
        shutil.rmtree(homes[mode], ignore_errors=True)
        shutil.copytree(homes[modes[0]], homes[mode])
    figures: dict[str, object] = {"flights": flights, "dbt_s": dbt_s}
    for mode in modes:
        address = cluster.address if mode == "cluster" else None
        watched = cluster.processes() if mode == "cluster" else []
        results: dict[str, dict] = {}
        for stage in STAGES:
            command = [
                sys.executable,
                __file__,
                f"--stage={stage}",
                f"--scaled-home={homes[mode]}",
                f"--home={arguments.home}",
                *([f"--address={address}"] if address else []),
            ]
            results[stage] = run_measured(command, watched, arguments.memory_cap_gb)
            print(f"{factor}x {mode} {stage}: {results[stage]}", file=sys.stderr)
            if "error" in results[stage]:
                break
        if watched:
            results["cluster_idle_gb"] = cluster_memory(watched)
        figures[mode] = results
    if "local" in modes and "cluster" in modes:
        figures["equal"], figures["outputs_compared"] = same_outputs(
            homes["local"], homes["cluster"]
        )
    return figures


def build_scaled_year(demo_home: Path, home: Path, factor: int, rows: int | None):
    """Write the scaled raw tables into `home` and build its warehouse with dbt."""
    tables = {name: pl.read_parquet(demo_home / "raw" / f"{name}.parquet") for name in RAW_TABLES}
    if rows is not None:
        tables["flights"] = tables["flights"].head(rows)
    (home / "raw").mkdir(parents=True, exist_ok=True)
    for name, frame in scale_year(tables, factor).items():
        write_parquet_atomic(frame, home / "raw" / f"{name}.parquet")
    started = time.perf_counter()
    subprocess.run(
        [
            str(DBT),
            "run",
            "--quiet",
            "--project-dir",
            str(PROJECT_ROOT / "dbt"),
            "--profiles-dir",
            str(PROJECT_ROOT / "dbt"),
            "--target-path",
            str(home / "dbt-target"),
            "--vars",
            json.dumps({"facilflow_home": str(home)}),
        ],
        check=True,
    )
    return tables["flights"].height * factor, round(time.perf_counter() - started, 1)


def run_measured(command: list[str], watched: list[psutil.Process], cap_gb: float) -> dict:
    """Run a stage's process; its figures, with its tree's (and `watched`'s) peak memory."""
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    peak, over_cap = 0, False
    tree = psutil.Process(child.pid)
    while child.poll() is None:
        used = _tree_rss([tree]) + _tree_rss(watched)
        peak = max(peak, used)
        if used > cap_gb * GIB:
            over_cap = True
            child.kill()
        time.sleep(SAMPLE_S)
    output = child.stdout.read() if child.stdout else ""
    if over_cap:
        return {"error": f"over the memory cap at {peak / GIB:.1f} GiB"}
    if child.returncode != 0:
        return {"error": f"exit code {child.returncode}"}
    return {**json.loads(output.strip().splitlines()[-1]), "peak_gb": round(peak / GIB, 2)}


def _tree_rss(roots: list[psutil.Process]) -> int:
    total = 0
    for root in roots:
        with contextlib.suppress(psutil.NoSuchProcess):
            for process in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += process.memory_info().rss
    return total


def cluster_memory(watched: list[psutil.Process]) -> float:
    return round(_tree_rss(watched) / GIB, 2)


def same_outputs(local: Path, cluster: Path) -> tuple[bool | None, int]:
    """Whether both modes wrote the same feature tables, training set and scores, as far as
    both got (None if they have no output in common); and how many files that compared."""
    written = {p.relative_to(local) for p in (local / "outputs").rglob("*.parquet")}
    common = sorted(p for p in written if (cluster / p).exists())
    for path in common:
        ours, theirs = pl.read_parquet(local / path), pl.read_parquet(cluster / path)
        if not ours.sort(ours.columns).equals(theirs.sort(theirs.columns), null_equal=True):
            return False, len(common)
    return (True if common else None), len(common)


def run_stage(arguments) -> dict:
    """One stage in this process (a child of the benchmark); its figures."""
    from facilflow_assets.features.cluster_tables import compute_on_cluster
    from facilflow_assets.features.engine import compute_features
    from facilflow_assets.features.feast_assets import build_entity_frame, retrieve
    from facilflow_assets.features.feast_objects import repo_contents
    from resources import FeastResource, RayResource, StorageResource

    home, address = arguments.scaled_home, arguments.address
    storage = StorageResource(home=str(home))
    files = storage.files(SCOPE)
    ray_cluster = RayResource(address=address, storage_path=str(home / "ray")) if address else None
    outputs = home / "outputs"
    if arguments.stage == "features":
        started, rows = time.perf_counter(), 0
        for table in USE_CASE.tables:
            source = storage.read_warehouse(table.source.model)
            if ray_cluster:
                frame = compute_on_cluster(table, source, ray_cluster).frame
            else:
                frame = compute_features(table, source.lazy())
            write_parquet_atomic(frame, files.feature_table_path(table.name))
            write_parquet_atomic(frame, outputs / "features" / f"{table.name}.parquet")
            rows += frame.height
        return {"s": round(time.perf_counter() - started, 2), "rows": rows}
    if arguments.stage == "join":
        feast = FeastResource(storage=storage, ray_address=address)
        feast.apply(SCOPE, repo_contents(USE_CASE, files.features_dir))
        entity_df = build_entity_frame(storage, USE_CASE, USE_CASE.target.lead_minutes)
        store = feast.feature_store(SCOPE)
        service = store.get_feature_service(USE_CASE.feature_service)
        retrieve(store, service, entity_df.head(1_000))  # loads the registry and modules
        before = psutil.Process().memory_info().rss
        peak = _PeakMemory()
        with peak:
            started = time.perf_counter()
            frame, nodes = retrieve(store, service, entity_df)
            seconds = time.perf_counter() - started
        write_parquet_atomic(frame, outputs / "training_set.parquet")
        size = frame.estimated_size()
        return {
            "s": round(seconds, 2),
            "rows": frame.height,
            "columns": frame.width,
            "ray_nodes": nodes,
            "training_set_gb": round(size / GIB, 3),
            "join_gb": round((peak.rss - before) / GIB, 3),
            "join_over_training_set": round((peak.rss - before) / size, 2),
        }
    return score_stage(arguments, outputs, ray_cluster)


def score_stage(arguments, outputs: Path, ray_cluster) -> dict:
    import dagster as dg

    from facilflow_assets.environment import Environment
    from facilflow_assets.resource_map import build_resources
    from facilflow_assets.serving.models import PRODUCTION, load, resolve
    from facilflow_assets.serving.scoring import resolve_mapping, score, score_on_cluster

    configured = build_resources(Environment.LOCAL, home=arguments.home.resolve())
    with dg.build_resources({"mlflow": configured["mlflow"]}) as resources:
        client = resources.mlflow.client()
        model = load(client, resolve(client, SCOPE.registered_model_name, PRODUCTION))
    frame = pl.read_parquet(outputs / "training_set.parquet")
    mapping = resolve_mapping(model, {})
    started = time.perf_counter()
    if ray_cluster:
        scores, nodes = score_on_cluster(ray_cluster, model, frame, mapping, "the scaled year")
    else:
        scores, nodes = score(model, frame, mapping, "the scaled year"), 0
    seconds = time.perf_counter() - started
    write_parquet_atomic(pl.DataFrame({"score": scores}), outputs / "scores.parquet")
    return {"s": round(seconds, 2), "rows": len(scores), "ray_nodes": nodes}


class _PeakMemory:
    """This process's peak resident memory while inside the block, sampled every 0.1 s."""

    def __enter__(self):
        self.rss, self._done = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        process = psutil.Process()
        while not self._done.is_set():
            self.rss = max(self.rss, process.memory_info().rss)
            time.sleep(SAMPLE_S / 10)

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self.rss = max(self.rss, psutil.Process().memory_info().rss)


class TwoNodes:
    """A Ray head (two CPUs) and a worker (one CPU) on loopback, as processes of this one."""

    def __init__(self, workdir: Path):
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        self.workdir = workdir
        common = ["--block", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
        self.nodes = [
            self._start(
                "head",
                [
                    "--head",
                    f"--port={port}",
                    "--include-dashboard=false",
                    f"--num-cpus={HEAD_CPUS}",
                    *common,
                ],
            ),
        ]
        self._wait_for(1)
        self.nodes.append(
            self._start(
                "worker", [f"--address={self.address}", f"--num-cpus={WORKER_CPUS}", *common]
            )
        )
        self._wait_for(2)

    def _start(self, name: str, arguments: list[str]) -> subprocess.Popen:
        return subprocess.Popen(
            [str(RAY), "start", *arguments],
            stdout=(self.workdir / f"ray-{name}.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **LOCAL_RAY_ENV},
        )

    def _wait_for(self, count: int) -> None:
        import ray

        os.environ.update(LOCAL_RAY_ENV)
        deadline = time.monotonic() + NODES_TIMEOUT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                ray.init(address=self.address, log_to_driver=False, configure_logging=False)
                alive = sum(node["Alive"] for node in ray.nodes())
                ray.shutdown()
                if alive >= count:
                    return
            time.sleep(1)
        raise TimeoutError(f"the Ray cluster at {self.address} has not {count} nodes")

    def processes(self) -> list[psutil.Process]:
        return [psutil.Process(node.pid) for node in self.nodes]

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for node in reversed(self.nodes):
            stop_process_group(node)


if __name__ == "__main__":
    main()
