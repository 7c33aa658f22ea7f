"""The trained-model asset: tune on Ray Tune, fit on Ray Train, track it all in MLflow."""

import contextlib
import hashlib
import json
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import mlflow
import mlflow.lightgbm as mlflow_lightgbm
import polars as pl
from mlflow.models import infer_signature

from facilflow_assets import plots
from facilflow_assets.asset_keys import TRAINING_GROUP, UseCaseKeys
from facilflow_assets.events.envelope import EventType, TrainingCompleted, TrainingStarted
from facilflow_assets.features.feast_assets import data_version
from facilflow_assets.features.lineup import current_service
from facilflow_assets.metadata import markdown_table
from facilflow_assets.scope import ModelScope
from facilflow_assets.training.boosting import frame_predictions
from facilflow_assets.training.candidate import (
    CANDIDATE_FILE,
    FEATURE_SERVICE_TAG,
    MODEL_URI_TAG,
    Candidate,
)
from facilflow_assets.training.config import TrainingConfig, training_config_for
from facilflow_assets.training.dataset import (
    TrainingData,
    read_training_set,
    split_training_data,
)
from facilflow_assets.training.distributed import FittedModel, fit_distributed, fit_in_process
from facilflow_assets.training.runs import compare_runs
from facilflow_assets.training.tracking import git_commit, log_history, log_png, log_trials
from facilflow_assets.training.tuning import TuningOutcome, tune_hyperparameters
from facilflow_assets.use_case import UseCase
from resources import (
    EventsResource,
    FeastResource,
    MlflowResource,
    RayResource,
    StorageResource,
)
from resources.mlflow import NOTE_TAG

TUNING_KEY_TAG = "facilflow.tuning_key"
MODEL_ARTIFACT = "model"
log = logging.getLogger(__name__)


def build_training_assets(use_case: UseCase, scope: ModelScope) -> list[dg.AssetsDefinition]:
    """The use case's trained model."""
    keys = UseCaseKeys(scope)
    config_class = training_config_for(use_case)

    @dg.asset(
        key=keys.trained_model,
        group_name=TRAINING_GROUP,
        kinds={"ray", "lightgbm", "mlflow"},
        deps=[keys.training_set],
        description=f"A LightGBM model of the use case ({use_case.description}): "
        "hyperparameters searched with Ray Tune (Optuna, ASHA), the best trial refitted "
        "data-parallel with Ray Train, tracked in MLflow.",
    )
    def trained_model(
        context: dg.AssetExecutionContext,
        config: config_class,  # pyright: ignore[reportInvalidTypeForm]  # the use case's class, read by Dagster
        storage: StorageResource,
        mlflow: MlflowResource,
        feast: FeastResource,
        ray_cluster: RayResource,
        events: EventsResource,
    ) -> dg.MaterializeResult:
        return train(context, config, use_case, scope, storage, mlflow, feast, ray_cluster, events)

    return [trained_model]


def train(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    use_case: UseCase,
    scope: ModelScope,
    storage: StorageResource,
    tracking: MlflowResource,
    feast: FeastResource,
    ray_cluster: RayResource,
    events: EventsResource,
) -> dg.MaterializeResult:
    """Search, fit and log a model of `use_case` on its current training set (that of the
    configured feature service, else of the version of its current features)."""
    files = storage.files(scope)
    tracking.check_reachable()  # before minutes of work, not after
    if not config.feature_service:
        service = current_service(feast.feature_store(scope), use_case)
        config = config.model_copy(update={"feature_service": service})
    path = files.training_set_path(config.feature_service)
    frame = read_training_set(path)
    version = data_version(frame)
    data = split_training_data(
        frame, str(path), use_case.label, *config.split_dates(), task=use_case.task
    )
    objective = data.objective

    def progress(message: str) -> None:
        context.log.info(message)
        log.info(message)

    progress(
        f"training set {version}: {data.train.rows:,} train, {data.validation.rows:,} "
        f"validation, {data.holdout.rows:,} holdout rows; {len(data.feature_names)} features"
    )
    tags = {
        "dagster.asset_key": UseCaseKeys(scope).trained_model.to_user_string(),
        FEATURE_SERVICE_TAG: config.feature_service,
        "facilflow.data_version": version,
        "mlflow.source.git.commit": git_commit(),
        **{f"facilflow.{k}": v for k, v in scope.event_fields().items()},
    }
    tuning_key = _tuning_key(version, config)
    unfinished = _unfinished_run(tracking, scope, tuning_key)
    with (
        tempfile.TemporaryDirectory() as scratch,
        _captured_log(Path(scratch) / "training.log") as training_log,
        tracking.tracked_run(
            scope,
            # Distinct per Dagster run: two trainings on the same data are two runs.
            f"train-{version[:8]}-{context.run.run_id[:8]}",
            {
                **tags,
                TUNING_KEY_TAG: tuning_key,
                NOTE_TAG: _description(use_case, config, data, version),
            },
            unfinished,
        ) as run,
    ):
        run_id, experiment_id = run.info.run_id, run.info.experiment_id
        if unfinished:
            progress(f"resuming the unfinished MLflow run {run_id} and its search")
        started = TrainingStarted(
            mlflow_run_id=run_id,
            feature_service=config.feature_service,
            data_version=version,
            num_trials=config.num_trials,
        )
        events.record([_training_event(scope, context, EventType.MODEL_TRAINING_STARTED, started)])
        with ray_cluster.session() as cluster:
            progress(f"Ray: {cluster.get('CPU', 0):g} CPUs; {config.num_trials} trials to run")
            tuning = tune_hyperparameters(
                data,
                config,
                ray_cluster.checkpoint_path(scope.tenant, scope.use_case, f"tune-{run_id}"),
                ray_cluster.storage_filesystem(),
                max_concurrent=max(1, int(cluster.get("CPU", 1))),
            )
            client = tracking.client()
            log_trials(client, experiment_id, run_id, tuning, tags)
            best = tuning.best
            progress(
                f"best of {len(tuning.trials)} trials ({len(tuning.failed)} failed): "
                f"{best.trial_id}, {objective.target} {best.best_score:.4f} at round "
                f"{best.best_round}"
            )
            if config.num_workers == 0:
                fitted = fit_in_process(data, best.hyperparameters, best.best_round, config.seed)
            else:
                fitted = fit_distributed(
                    data,
                    best.hyperparameters,
                    best.best_round,
                    config.num_workers,
                    config.seed,
                    config.checkpoint_every,
                    ray_cluster.checkpoint_path(scope.tenant, scope.use_case, f"fit-{run_id}"),
                    ray_cluster.storage_filesystem(),
                )
        where = f"Ray Train, {fitted.workers} workers" if fitted.workers else "in process"
        progress(f"final fit ({where}): {best.best_round} rounds, {fitted.seconds:.1f} s")
        _record_training(client, run_id, config, data, tuning, fitted)
        importance = plots.png(plots.feature_importance(fitted.booster))
        log_png(importance, "feature_importance.png")
        model_info = _log_model(fitted, data)
        _log_file(training_log)
    candidate = Candidate(
        run_id=run_id,
        experiment_id=experiment_id,
        model_uri=model_info.model_uri,
        feature_service=config.feature_service,
        data_version=version,
        feature_names=data.feature_names,
        train_start=config.train_start,
        validation_start=config.validation_start,
        holdout_start=config.holdout_start,
        valid_metrics={name: values[-1] for name, values in fitted.history.items()},
    )
    candidate.write(files.models_dir / CANDIDATE_FILE)
    completed = TrainingCompleted(
        mlflow_run_id=run_id,
        model_uri=model_info.model_uri,
        valid_auc=candidate.valid_metrics.get("valid_auc"),
        valid_rmse=candidate.valid_metrics.get("valid_rmse"),
        trials=len(tuning.trials),
        failed_trials=len(tuning.failed),
    )
    events.record([_training_event(scope, context, EventType.MODEL_TRAINING_COMPLETED, completed)])
    trials = compare_runs(
        client,
        experiment_id,
        f"best_{objective.target}",
        top=len(tuning.trials),
        parent_run_id=run_id,
        ascending=objective.mode == "min",
    )
    url = tracking.run_url(experiment_id, run_id)
    return dg.MaterializeResult(
        metadata={
            "mlflow_run_id": run_id,
            **({"mlflow_run": dg.MetadataValue.url(url)} if url else {}),
            "model_uri": model_info.model_uri,
            **candidate.valid_metrics,
            "boosting_rounds": best.best_round,
            "hyperparameters": dg.MetadataValue.json(best.hyperparameters),
            "trials": len(tuning.trials),
            "failed_trials": len(tuning.failed),
            "resumed_search": tuning.resumed,
            "trial_comparison": dg.MetadataValue.md(markdown_table(trials)),
            "feature_importance": dg.MetadataValue.md(
                plots.markdown_image(importance, "feature importance")
            ),
            "data_version": version,
            "ray_train_workers": fitted.workers,
        }
    )


def _training_event(scope: ModelScope, context, event_type: EventType, payload):
    """One event of each type per MLflow run, however often the step is retried."""
    return scope.event(
        event_type, payload, dagster_run_id=context.run.run_id, once_per=payload.mlflow_run_id
    )


def _tuning_key(version: str, config: TrainingConfig) -> str:
    """Same data and settings, same key: an unfinished run with it is resumed."""
    settings = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(f"{version}:{settings}".encode()).hexdigest()[:16]


def _unfinished_run(tracking: MlflowResource, scope: ModelScope, tuning_key: str) -> str | None:
    experiment = tracking.ensure_experiment(scope)
    runs = tracking.client().search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{TUNING_KEY_TAG}` = '{tuning_key}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if runs and runs[0].info.status != "FINISHED":
        return runs[0].info.run_id
    return None


def _description(use_case: UseCase, config, data: TrainingData, version: str) -> str:
    """What the run trained, on which data: the run's description in the MLflow UI."""
    return (
        f"LightGBM {use_case.task} model of {use_case.description.lower()}: "
        f"{config.num_trials} trials searched with Ray Tune, the best refitted "
        f"{'on Ray Train' if config.num_workers else 'in the step'}; feature service "
        f"{config.feature_service}, training set {version} ({data.train.rows:,} train, "
        f"{data.validation.rows:,} validation rows, {len(data.feature_names)} features, "
        f"holdout from {config.holdout_start})."
    )


def _record_training(client, run_id, config, data: TrainingData, tuning: TuningOutcome, fitted):
    """Parameters of the final fit, its per-round validation metrics, and the search."""
    best = tuning.best
    mlflow.log_params(
        {
            **best.hyperparameters,
            "num_boost_round": best.best_round,
            "num_workers": fitted.workers,
            "num_trials": config.num_trials,
            "max_rounds": config.max_rounds,
            "seed": config.seed,
            "train_start": config.train_start,
            "validation_start": config.validation_start,
            "holdout_start": config.holdout_start,
            "features": len(data.feature_names),
            "train_rows": data.train.rows,
            "validation_rows": data.validation.rows,
        }
    )
    log_history(client, run_id, fitted.history)
    mlflow.log_metrics(
        {
            **{f"final_{name}": values[-1] for name, values in fitted.history.items()},
            f"best_trial_{data.objective.target}": best.best_score,
            "failed_trials": len(tuning.failed),
            "ray_train_seconds": fitted.seconds,
        }
    )
    mlflow.log_dict(config.model_dump(mode="json")["search_space"], "search_space.json")


def _log_model(fitted: FittedModel, data: TrainingData):
    """The booster in LightGBM's own text format, with its signature and an input example."""
    rows = data.train.frame.select(data.feature_names).drop_nulls().head(5)
    # Numbers as float32, as the model reads them; categories as their text.
    example = rows.with_columns(pl.exclude(pl.String).cast(pl.Float32)).to_pandas()
    model_info = mlflow_lightgbm.log_model(
        fitted.booster,
        name=MODEL_ARTIFACT,
        signature=infer_signature(example, frame_predictions(fitted.booster, rows)),
        input_example=example,
        # Named, not inferred: inference loads the model in a subprocess, seconds per run.
        pip_requirements=mlflow_lightgbm.get_default_pip_requirements(),
    )
    mlflow.set_tag(MODEL_URI_TAG, model_info.model_uri)
    return model_info


def _log_file(handler: logging.FileHandler) -> None:
    handler.flush()
    mlflow.log_artifact(handler.baseFilename)


@contextlib.contextmanager
def _captured_log(path: Path) -> Iterator[logging.FileHandler]:
    """Progress lines of this module written to `path`, for the run's `training.log`."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("facilflow_assets")
    logger.addHandler(handler)
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
        handler.close()
