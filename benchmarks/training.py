"""Training the flight-delay model with and without MLflow tracking, with and without Ray.

The same LightGBM model (fixed hyperparameters, fixed rounds) on the demo's training set:
  plain   - lightgbm in this process, all cores;
  tracked - the same, recording what the trained-model asset records (run, tags, params,
            every round's validation metrics in batches, the model in LightGBM's format) to
            a local MLflow store that is already open, as in a running Dagster step;
  ray     - Ray Train, data-parallel across workers (one core each), after Ray has started.
Plain and tracked runs alternate after one untimed run of each, so drift in the machine's
speed hits both alike; each is timed five times and the best time counts (Ray: three).
`--rounds`, `--repeats` and `--ray-repeats` make a smoke run; Ray Train's start-up, most
of a fit's time at that size, stays.
Run `make demo` first (or name its working directory with `--home`). Ends with one JSON line.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightgbm as lgb
import mlflow
import mlflow.lightgbm
from mlflow.models import infer_signature

from facilflow_assets.environment import LOCAL_HOME
from facilflow_assets.scope import ModelScope
from facilflow_assets.tenants import DEFAULT_TENANT
from facilflow_assets.training.boosting import append_round, boost
from facilflow_assets.training.config import training_config_for
from facilflow_assets.training.dataset import read_training_set, split_training_data
from facilflow_assets.training.distributed import fit_distributed
from facilflow_assets.training.tracking import log_history
from facilflow_assets.use_case import load_use_case, use_case_path
from resources import MlflowResource, RayResource, StorageResource

HYPERPARAMETERS = {"learning_rate": 0.08, "num_leaves": 63, "min_data_in_leaf": 100}
ROUNDS = 200
REPEATS = 5
RAY_REPEATS = 3
CORES = os.cpu_count() or 1
SCOPE = ModelScope(DEFAULT_TENANT, "flight_delay")  # the model `make demo` trains
USE_CASE = load_use_case(use_case_path(SCOPE.use_case))


def train_plain(data, rounds: int, history: dict) -> lgb.Booster:
    return boost(
        data.objective,
        {**HYPERPARAMETERS, "num_threads": CORES, "seed": 42},
        (data.train.features, data.train.labels),
        (data.validation.features, data.validation.labels),
        rounds,
        lambda _round, metrics, _booster: append_round(history, metrics),
        data.feature_names,
    )


def train_tracked(data, rounds: int, experiment_id: str) -> lgb.Booster:
    history: dict = {}
    with mlflow.start_run(experiment_id=experiment_id, tags={"facilflow.benchmark": "training"}):
        mlflow.log_params({**HYPERPARAMETERS, "num_boost_round": rounds})
        booster = train_plain(data, rounds, history)
        log_history(mlflow.MlflowClient(), mlflow.active_run().info.run_id, history)
        example = data.train.frame.select(data.feature_names).drop_nulls().head(5).to_pandas()
        example = example.astype("float32")
        mlflow.lightgbm.log_model(
            booster,
            name="model",
            signature=infer_signature(example, booster.predict(example.to_numpy())),
            input_example=example,
            pip_requirements=mlflow.lightgbm.get_default_pip_requirements(),
        )
    return booster


def timed(work) -> tuple[float, object]:
    started = time.perf_counter()
    result = work()
    return round(time.perf_counter() - started, 3), result


def best_of(repeats: int, work) -> tuple[float, list[float], object]:
    runs = [timed(work) for _ in range(repeats)]
    return min(t for t, _ in runs), [t for t, _ in runs], runs[-1][1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=LOCAL_HOME, help="working directory")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="boosting rounds of a fit")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="timed plain, tracked fits")
    parser.add_argument("--ray-repeats", type=int, default=RAY_REPEATS, help="timed Ray fits")
    arguments = parser.parse_args()
    rounds = arguments.rounds
    files = StorageResource(home=str(arguments.home)).files(SCOPE)
    path = files.training_set_path(USE_CASE.feature_service)
    if not path.exists():
        sys.exit(f"{path} is missing: run `make demo` first")
    dates = training_config_for(USE_CASE)().split_dates()
    data = split_training_data(read_training_set(path), str(path), USE_CASE.label, *dates)
    print(f"{data.train.rows:,} train rows, {len(data.feature_names)} features, {rounds} rounds")

    plain_runs, tracked_runs = [], []
    with tempfile.TemporaryDirectory() as store:
        tracking = MlflowResource(
            tracking_uri=f"sqlite:///{Path(store) / 'mlflow.db'}",
            artifact_root=(Path(store) / "artifacts").as_uri(),
        )
        with tracking.fluent():
            experiment_id = mlflow.create_experiment(
                "benchmark", artifact_location=tracking.artifact_root
            )
            plain = train_plain(data, rounds, {})
            train_tracked(data, rounds, experiment_id)
            for _ in range(arguments.repeats):
                plain_runs.append(timed(lambda: train_plain(data, rounds, {}))[0])
                tracked_runs.append(timed(lambda: train_tracked(data, rounds, experiment_id))[0])
    plain_s, tracked_s = min(plain_runs), min(tracked_runs)
    print(f"plain:   {plain_runs}")
    print(f"tracked: {tracked_runs}")

    with tempfile.TemporaryDirectory() as checkpoints:
        # A Ray of its own, as a training step starts it, even beside another on this machine.
        ray_cluster = RayResource(num_cpus=CORES, storage_path=checkpoints)
        started = time.perf_counter()
        with ray_cluster.session():
            ray_init_s = time.perf_counter() - started
            ray_s, ray_runs, fitted = best_of(
                arguments.ray_repeats,
                lambda: fit_distributed(
                    data,
                    HYPERPARAMETERS,
                    rounds,
                    num_workers=CORES,
                    seed=42,
                    checkpoint_every=rounds,
                    path=ray_cluster.checkpoint_path(f"fit-{time.monotonic_ns()}"),
                ),
            )
    print(f"ray:     {ray_runs}")

    plain_auc = _auc(plain, data)
    print(
        json.dumps(
            {
                "rows": data.train.rows,
                "features": len(data.feature_names),
                "rounds": rounds,
                "cores": CORES,
                "plain_s": plain_s,
                "tracked_s": tracked_s,
                "tracking_overhead": round(tracked_s / plain_s, 3),
                "ray_s": ray_s,
                "ray_workers": fitted.workers,
                "ray_init_s": round(ray_init_s, 3),
                "plain_runs_s": plain_runs,
                "tracked_runs_s": tracked_runs,
                "ray_runs_s": ray_runs,
                "tracked_median_overhead": round(
                    statistics.median(tracked_runs) / statistics.median(plain_runs), 3
                ),
                "valid_auc_plain": round(plain_auc, 4),
                "valid_auc_ray": round(fitted.history["valid_auc"][-1], 4),
            }
        )
    )


def _auc(booster: lgb.Booster, data) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(data.validation.labels, booster.predict(data.validation.features)))


if __name__ == "__main__":
    main()
