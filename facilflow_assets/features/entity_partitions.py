"""Work split by entity over a Ray cluster.

Rows go to partitions by a hash of their entity columns that is the same in every process
(polars' hash with a fixed seed, on every node of one environment), so two frames split
apart, such as entity rows and a feature table, meet again partition by partition.
"""

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import polars as pl
import ray

PARTITION = "__partition"
_SEED = 0
# A partition's task may take long at scale; a lost node's tasks are retried by Ray.
CLUSTER_TASK_TIMEOUT_S = 3_600
# Rows a task takes at most (before its rows fan out into features): more partitions than
# CPUs keep each task's memory bounded as the data grows.
ROWS_PER_PARTITION = 2_000_000


def partition_count(resources: Mapping[str, float], rows: int) -> int:
    """Partitions for `rows` on a cluster with `resources`: one per CPU at least, more when
    a partition would pass ROWS_PER_PARTITION."""
    return max(1, int(resources.get("CPU", 1)), math.ceil(rows / ROWS_PER_PARTITION))


def partition_of(columns: list[str], count: int) -> pl.Expr:
    """Each row's partition, 0 to count - 1, from its values in `columns`."""
    return (pl.struct(columns).hash(seed=_SEED) % count).cast(pl.Int64).alias(PARTITION)


def split(frame: pl.DataFrame, columns: list[str], count: int) -> list[pl.DataFrame]:
    """`frame`'s rows in `count` partitions by `columns`, in partition order (some may be
    empty), each in the order the rows had in `frame`."""
    tagged = frame.with_columns(partition_of(columns, count))
    parts = tagged.partition_by(PARTITION, as_dict=True, include_key=False, maintain_order=True)
    return [parts.get((index,), frame.clear()) for index in range(count)]


def run_on_cluster(function: Callable[..., Any], calls: Iterable[tuple]) -> tuple[list[Any], int]:
    """`function(*call)` for each call, as Ray tasks spread over the connected cluster's
    nodes; returns the results in call order and how many nodes computed them. Each call's
    arguments go to the cluster's object store as it is submitted, so `calls` may make
    them one by one."""
    tasks = [_run.remote(function, *call) for call in calls]
    done = ray.get(tasks, timeout=CLUSTER_TASK_TIMEOUT_S)
    return [result for _, result in done], len({node for node, _ in done})


def collect_by_partition(plan: pl.LazyFrame, columns: list[str], count: int) -> pl.DataFrame:
    """The rows of `plan`, collected one partition by `columns` per task on the connected
    cluster (in no set order). Right for a plan whose every row depends only on rows with
    its values of `columns`, such as the latest row per entity."""
    calls = [(plan, columns, index, count) for index in range(count)]
    parts, _ = run_on_cluster(_collect_partition, calls)
    return pl.concat(parts)


def _collect_partition(plan: pl.LazyFrame, columns: list[str], index: int, count: int):
    return plan.filter(partition_of(columns, count) == index).collect()


@ray.remote(num_cpus=1, scheduling_strategy="SPREAD")
def _run(function: Callable[..., Any], *arguments: Any) -> tuple[str, Any]:
    return ray.get_runtime_context().get_node_id(), function(*arguments)
