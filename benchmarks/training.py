"""Training the flight-delay model with and without MLflow tracking, with and without Ray.

The same LightGBM model (fixed hyperparameters, fixed rounds) on the demo's training set:
  plain   - lightgbm in this process, all cores;
  tracked - the same, recording what the trained-model asset records (run, tags, params,
            every round's validation metrics in batches, the model in LightGBM's format) to
            a local MLflow store that is already open, as in a running Dagster step;
  ray     - Ray Train, data-parallel across workers (one core each), after Ray has started.
Plain and tracked runs alternate after one untimed run of each, so drift in the machine's
speed hits both alike; each is timed five times and the best time counts (Ray: three).
Run `make demo` first.
Ends with one JSON line.
"""

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
import ray
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
from resources import StorageResource

HYPERPARAMETERS = {"learning_rate": 0.08, "num_leaves": 63, "min_data_in_leaf": 100}
ROUNDS = 200
REPEATS = 5
RAY_REPEATS = 3
CORES = os.cpu_count() or 1
SCOPE = ModelScope(DEFAULT_TENANT, "flight_delay")  # the model `make demo` trains
USE_CASE = load_use_case(use_case_path(SCOPE.use_case))


def train_plain(data, history: dict) -> lgb.Booster:
    return boost(
        data.objective,
        {**HYPERPARAMETERS, "num_threads": CORES, "seed": 42},
        (data.train.features, data.train.labels),
        (data.validation.features, data.validation.labels),
        ROUNDS,
        lambda _round, metrics, _booster: append_round(history, metrics),
        data.feature_names,
    )


def train_tracked(data, experiment_id: str) -> lgb.Booster:
    history: dict = {}
    with mlflow.start_run(experiment_id=experiment_id, tags={"facilflow.benchmark": "training"}):
        mlflow.log_params({**HYPERPARAMETERS, "num_boost_round": ROUNDS})
        booster = train_plain(data, history)
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
    files = StorageResource(home=str(LOCAL_HOME)).files(SCOPE)
    path = files.training_set_path(USE_CASE.feature_service)
    if not path.exists():
        sys.exit(f"{path} is missing: run `make demo` first")
    dates = training_config_for(USE_CASE)().split_dates()
    data = split_training_data(read_training_set(path), str(path), USE_CASE.label, *dates)
    print(f"{data.train.rows:,} train rows, {len(data.feature_names)} features, {ROUNDS} rounds")

    plain_runs, tracked_runs = [], []
    with tempfile.TemporaryDirectory() as store:
        mlflow.set_tracking_uri(f"sqlite:///{Path(store) / 'mlflow.db'}")
        experiment_id = mlflow.create_experiment(
            "benchmark", artifact_location=(Path(store) / "artifacts").as_uri()
        )
        plain = train_plain(data, {})
        train_tracked(data, experiment_id)
        for _ in range(REPEATS):
            plain_runs.append(timed(lambda: train_plain(data, {}))[0])
            tracked_runs.append(timed(lambda: train_tracked(data, experiment_id))[0])
    plain_s, tracked_s = min(plain_runs), min(tracked_runs)
    print(f"plain:   {plain_runs}")
    print(f"tracked: {tracked_runs}")

    started = time.perf_counter()
    ray.init(num_cpus=CORES, include_dashboard=False, log_to_driver=False)
    ray_init_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as checkpoints:
        ray_s, ray_runs, fitted = best_of(
            RAY_REPEATS,
            lambda: fit_distributed(
                data,
                HYPERPARAMETERS,
                ROUNDS,
                num_workers=CORES,
                seed=42,
                checkpoint_every=ROUNDS,
                path=f"{checkpoints}/fit-{time.monotonic_ns()}",
            ),
        )
    ray.shutdown()
    print(f"ray:     {ray_runs}")

    plain_auc = _auc(plain, data)
    print(
        json.dumps(
            {
                "rows": data.train.rows,
                "features": len(data.feature_names),
                "rounds": ROUNDS,
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
