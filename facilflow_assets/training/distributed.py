"""The final fit: data-parallel LightGBM across Ray Train workers, or in the step's own
process where a worker group would only add its start-up (about 30 s on two cores)."""

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import pyarrow.fs
import ray
import ray.train
from ray.train.lightgbm import LightGBMTrainer, get_network_params

from facilflow_assets.training.boosting import (
    append_round,
    boost,
    load_checkpoint,
    save_checkpoint,
)
from facilflow_assets.training.dataset import TrainingData


@dataclass(frozen=True)
class FittedModel:
    booster: lgb.Booster
    history: dict[str, list[float]]  # validation metrics per round, from round 1
    workers: int
    seconds: float


def train_worker(config: dict) -> None:
    """One Ray Train worker: its share of the train rows, the whole validation slice."""
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    features, labels = ray.get(config["train"][0])
    shard = slice(rank, None, world)
    init_model, history = None, {}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:  # a restarted worker group continues where it stopped
        with checkpoint.as_directory() as directory:
            init_model, history = load_checkpoint(Path(directory))
    rounds = config["rounds"]

    def on_round(round_number: int, metrics: dict[str, float], booster: lgb.Booster) -> None:
        append_round(history, metrics)
        if round_number % config["checkpoint_every"] and round_number != rounds:
            return
        # Every worker reports (Ray Train waits for all); rank 0 carries the checkpoint.
        with tempfile.TemporaryDirectory() as directory:
            saved = None
            if rank == 0:
                save_checkpoint(Path(directory), booster, history)
                saved = ray.train.Checkpoint.from_directory(directory)
            ray.train.report({**metrics, "round": round_number}, checkpoint=saved)

    params = {
        **config["hyperparameters"],
        "num_threads": 1,
        "seed": config["seed"],
        "tree_learner": "data_parallel",
        "pre_partition": True,
        **get_network_params(),
    }
    boost(
        config["objective"],
        params,
        (features[shard], labels[shard]),
        ray.get(config["validation"][0]),
        rounds,
        on_round,
        config["feature_names"],
        init_model,
        config["categories"],
    )


def fit_in_process(
    data: TrainingData, hyperparameters: dict, rounds: int, seed: int
) -> FittedModel:
    """Train `rounds` rounds here, on every core of the step's process."""
    started = time.perf_counter()
    history: dict[str, list[float]] = {}
    booster = boost(
        data.objective,
        {**hyperparameters, "seed": seed},
        (data.train.features, data.train.labels),
        (data.validation.features, data.validation.labels),
        rounds,
        lambda _, metrics, __: append_round(history, metrics),
        data.feature_names,
        categories=data.categories,
    )
    return FittedModel(booster, history, 0, time.perf_counter() - started)


def fit_distributed(
    data: TrainingData,
    hyperparameters: dict,
    rounds: int,
    num_workers: int,
    seed: int,
    checkpoint_every: int,
    path: str,
    filesystem: pyarrow.fs.FileSystem | None = None,
) -> FittedModel:
    """Train `rounds` rounds on `num_workers` Ray Train workers; checkpoints under `path`."""
    started = time.perf_counter()
    storage, name = path.rsplit("/", 1)
    trainer = LightGBMTrainer(
        train_worker,
        train_loop_config={
            "hyperparameters": hyperparameters,
            # Wrapped in lists so Ray passes the references, not the arrays, to each worker.
            "train": [ray.put((data.train.features, data.train.labels))],
            "validation": [ray.put((data.validation.features, data.validation.labels))],
            "rounds": rounds,
            "seed": seed,
            "checkpoint_every": checkpoint_every,
            "feature_names": data.feature_names,
            "categories": data.categories,
            "objective": data.objective,
        },
        # One worker per node where the cluster has several: each brings its node's cores
        # and memory to the data-parallel fit (on one machine they share it).
        scaling_config=ray.train.ScalingConfig(
            num_workers=num_workers, placement_strategy="SPREAD"
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage,
            storage_filesystem=filesystem,
            failure_config=ray.train.FailureConfig(max_failures=1),
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"the Ray Train run {name} ended without a checkpoint")
    with result.checkpoint.as_directory() as directory:
        booster, history = load_checkpoint(Path(directory))
    return FittedModel(booster, history, num_workers, time.perf_counter() - started)
