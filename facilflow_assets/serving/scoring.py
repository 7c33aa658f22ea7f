"""Scoring a frame with a loaded model through an explicit column mapping."""

from collections.abc import Set

import numpy as np
import polars as pl
import ray

from facilflow_assets.serving.models import LoadedModel
from facilflow_assets.training.dataset import feature_matrix
from resources import RayResource

NUMERIC = (
    pl.Float32,
    pl.Float64,
    pl.Int8,
    pl.Int16,
    pl.Int32,
    pl.Int64,
    pl.UInt8,
    pl.UInt16,
    pl.UInt32,
    pl.UInt64,
    pl.Boolean,
)
TEXT = (pl.String, pl.Null)  # a categorical input's column; all null where none is known


# A cluster whose CPUs stay taken (by a long tuning run, say) fails the step, not hangs it.
CLUSTER_SCORING_TIMEOUT_S = 600


class MappingError(ValueError):
    """The column mapping does not fit the model's inputs or the frame; names the column."""


def resolve_mapping(model: LoadedModel, mapping: dict[str, str]) -> dict[str, str]:
    """Model input -> upstream column for every input: mapped ones as given, the rest by name."""
    unknown = sorted(set(mapping) - set(model.input_names))
    if unknown:
        raise MappingError(
            f"column_mapping names {', '.join(unknown)}, which {model.ref.uri} does not take "
            f"as input (its signature has {len(model.input_names)} inputs)"
        )
    return {name: mapping.get(name, name) for name in model.input_names}


def check_columns(
    frame: pl.DataFrame, mapping: dict[str, str], where: str, text_inputs: Set[str] = frozenset()
) -> None:
    """Every mapped column exists in `frame` and is numeric, or text for a text input."""
    missing = [
        f"{column} (for input {name})"
        for name, column in mapping.items()
        if column not in frame.columns
    ]
    if missing:
        raise MappingError(f"{where} lacks column(s) {', '.join(missing)}")
    mistyped = [
        f"{column} is {frame.schema[column]}"
        for name, column in mapping.items()
        if frame.schema[column] not in (TEXT if name in text_inputs else NUMERIC)
    ]
    if mistyped:
        raise MappingError(
            f"{where}: model inputs must be numeric (text for a categorical one): "
            + ", ".join(mistyped)
        )


def score(
    model: LoadedModel, frame: pl.DataFrame, mapping: dict[str, str], where: str
) -> np.ndarray:
    """Probabilities for each row of `frame`, its columns fed to the model as `mapping` says
    (float32, nulls as missing values, exactly as in training)."""
    return model.predict(_inputs(model, frame, mapping, where))


def score_on_cluster(
    ray_cluster: RayResource,
    model: LoadedModel,
    frame: pl.DataFrame,
    mapping: dict[str, str],
    where: str,
) -> tuple[np.ndarray, int]:
    """`score`, in one Ray task per CPU of the cluster, spread over its nodes; returns the
    predictions (probabilities or amounts) in row order and how many nodes computed them."""
    rows = _inputs(model, frame, mapping, where)
    with ray_cluster.session() as resources:
        shared = ray.put(model)
        chunks = np.array_split(rows, max(1, min(int(resources.get("CPU", 1)), len(rows))))
        tasks = [_predict_chunk.remote(shared, chunk) for chunk in chunks]
        scored = ray.get(tasks, timeout=CLUSTER_SCORING_TIMEOUT_S)
    nodes = {node for node, _ in scored}
    return np.concatenate([scores for _, scores in scored]), len(nodes)


def _inputs(
    model: LoadedModel, frame: pl.DataFrame, mapping: dict[str, str], where: str
) -> np.ndarray:
    check_columns(frame, mapping, where, set(model.categories))
    inputs = frame.select(pl.col(column).alias(name) for name, column in mapping.items())
    return feature_matrix(inputs, list(mapping), model.categories)


@ray.remote(num_cpus=1, scheduling_strategy="SPREAD")
def _predict_chunk(model: LoadedModel, rows: np.ndarray) -> tuple[str, np.ndarray]:
    return ray.get_runtime_context().get_node_id(), model.predict(rows)
