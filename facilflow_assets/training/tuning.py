"""Hyperparameter search with Ray Tune: Optuna proposes, ASHA stops weak trials early.

Trials checkpoint every few rounds under the configured storage; a search interrupted
part-way is restored from there by the next call with the same `path`.
"""

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.fs
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from facilflow_assets.training.boosting import (
    append_round,
    boost,
    load_checkpoint,
    save_checkpoint,
)
from facilflow_assets.training.config import TrainingConfig
from facilflow_assets.training.dataset import TrainingData
from facilflow_assets.training.objective import Objective

log = logging.getLogger(__name__)


class TuningError(RuntimeError):
    """No trial of the search finished."""


@dataclass(frozen=True)
class TrialSettings:
    objective: Objective
    max_rounds: int
    checkpoint_every: int
    seed: int
    feature_names: list[str]
    categories: dict[str, list[str]]


@dataclass(frozen=True)
class TrialOutcome:
    trial_id: str
    hyperparameters: dict
    status: str  # FINISHED (ran to the end or stopped early by ASHA) or FAILED
    objective: Objective
    history: dict[str, list[float]] = field(default_factory=dict)  # per round, from round 1
    error: str | None = None
    started_at: float | None = None  # epoch seconds
    ended_at: float | None = None

    @property
    def rounds(self) -> int:
        return len(self.history.get(self.objective.target, []))

    @property
    def best_round(self) -> int:
        return self.objective.best_round(self.history[self.objective.target])

    @property
    def best_score(self) -> float:
        """The best validation value of the objective's target (AUC, or RMSE)."""
        return self.objective.best(self.history[self.objective.target])


@dataclass(frozen=True)
class TuningOutcome:
    trials: list[TrialOutcome]
    resumed: bool

    @property
    def best(self) -> TrialOutcome:
        finished = [t for t in self.trials if t.status == "FINISHED" and t.rounds]
        best = finished[0]
        for trial in finished[1:]:
            if trial.objective.ranks_above(trial.best_score, best.best_score):
                best = trial
        return best

    @property
    def failed(self) -> list[TrialOutcome]:
        return [t for t in self.trials if t.status == "FAILED"]


Arrays = tuple[np.ndarray, np.ndarray]


def run_trial(
    hyperparameters: dict, train: Arrays, validation: Arrays, settings: TrialSettings
) -> None:
    """One trial: boost on the train slice, report the validation metrics every round."""
    init_model, history = None, {}
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            init_model, history = load_checkpoint(Path(directory))

    def on_round(round_number: int, metrics: dict[str, float], booster) -> None:
        append_round(history, metrics)
        result = {**metrics, "round": round_number}
        due = round_number % settings.checkpoint_every == 0 or round_number == settings.max_rounds
        if not due:
            tune.report(result)
            return
        with tempfile.TemporaryDirectory() as directory:
            save_checkpoint(Path(directory), booster, history)
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(directory))

    boost(
        settings.objective,
        {**hyperparameters, "num_threads": 1, "seed": settings.seed},
        train,
        validation,
        settings.max_rounds,
        on_round,
        settings.feature_names,
        init_model,
        settings.categories,
    )


def tune_hyperparameters(
    data: TrainingData,
    config: TrainingConfig,
    path: str,
    filesystem: pyarrow.fs.FileSystem | None = None,
    max_concurrent: int | None = None,
) -> TuningOutcome:
    """Run (or resume) the search stored at `path`; raise TuningError if no trial finished."""
    trainable = tune.with_parameters(
        run_trial,
        train=(data.train.features, data.train.labels),
        validation=(data.validation.features, data.validation.labels),
        settings=TrialSettings(
            data.objective,
            config.max_rounds,
            config.checkpoint_every,
            config.seed,
            data.feature_names,
            data.categories,
        ),
    )
    storage, name = path.rsplit("/", 1)
    resumed = tune.Tuner.can_restore(path, storage_filesystem=filesystem)
    if resumed:
        log.info("resuming the search stored at %s", path)
        tuner = tune.Tuner.restore(path, trainable, storage_filesystem=filesystem)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=config.tune_search_space(),
            tune_config=tune.TuneConfig(
                metric=data.objective.target,
                mode=data.objective.mode,
                num_samples=config.num_trials,
                search_alg=OptunaSearch(seed=config.seed),
                scheduler=ASHAScheduler(
                    time_attr="round", max_t=config.max_rounds, grace_period=config.grace_rounds
                ),
                max_concurrent_trials=max_concurrent,
                trial_dirname_creator=lambda trial: trial.trial_id,
                trial_name_creator=lambda trial: trial.trial_id,
            ),
            run_config=tune.RunConfig(
                name=name, storage_path=storage, storage_filesystem=filesystem, verbose=0
            ),
        )
    trials = [_outcome(r, data.objective) for r in tuner.fit()]
    outcome = TuningOutcome(trials=trials, resumed=resumed)
    if not any(t.status == "FINISHED" and t.rounds for t in outcome.trials):
        first_error = next((t.error for t in outcome.failed), "no trial reported a round")
        raise TuningError(f"all {len(outcome.trials)} trials failed; the first: {first_error}")
    return outcome


def _outcome(result: tune.Result, objective: Objective) -> TrialOutcome:
    reports = result.metrics_dataframe
    history, started, ended = {}, None, None
    if reports is not None and len(reports):
        reports = reports.sort_values("round").drop_duplicates("round", keep="last")
        history = {m: reports[m].astype(float).tolist() for m in objective.round_metrics.values()}
        started = float(reports["timestamp"].iloc[0] - reports["time_this_iter_s"].iloc[0])
        ended = float(reports["timestamp"].iloc[-1])
    return TrialOutcome(
        trial_id=Path(result.path).name,
        hyperparameters=dict(result.config or {}),  # None if the trial died at start
        status="FAILED" if result.error else "FINISHED",
        objective=objective,
        history=history,
        error=_last_line(result.error) if result.error else None,
        started_at=started,
        ended_at=ended,
    )


def _last_line(error: BaseException) -> str:
    """The exception's own message, without Ray's wrapping traceback."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
