"""What a training run records in MLflow beyond the model: step metrics, trials, code."""

import subprocess
import tempfile
import time
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from facilflow_assets.environment import PROJECT_ROOT
from facilflow_assets.training.tuning import TrialOutcome, TuningOutcome

BATCH_SIZE = 1000  # MLflow's limit of metrics per log_batch call
TRIAL_TAG = "facilflow.trial_id"
PARENT_TAG = "mlflow.parentRunId"


def git_commit() -> str:
    """The commit of the code that trains, with '+dirty' for uncommitted changes."""
    try:
        commit = _git("rev-parse", "HEAD")
        return commit + ("+dirty" if _git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()


def log_history(
    client: MlflowClient, run_id: str, history: dict[str, list[float]], at_ms: int | None = None
) -> None:
    """Per-round metrics with their round as `step`, in batches of up to 1,000."""
    at_ms = at_ms or int(time.time() * 1000)
    metrics = [
        Metric(name, value, at_ms, step)
        for name, values in history.items()
        for step, value in enumerate(values, start=1)
    ]
    for start in range(0, len(metrics), BATCH_SIZE):
        client.log_batch(run_id, metrics=metrics[start : start + BATCH_SIZE])


def log_trials(
    client: MlflowClient, experiment_id: str, parent_run_id: str, tuning: TuningOutcome, tags
) -> None:
    """Each trial as a run nested under the parent; trials already logged are skipped, so
    a resumed search does not log one twice."""
    logged = {
        run.data.tags.get(TRIAL_TAG)
        for run in client.search_runs(
            [experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'"
        )
    }
    for trial in tuning.trials:
        if trial.trial_id not in logged:
            _log_trial(client, experiment_id, parent_run_id, trial, tags)


def _log_trial(
    client: MlflowClient, experiment_id: str, parent_run_id: str, trial: TrialOutcome, tags
) -> None:
    started_ms = int(1000 * (trial.started_at or time.time()))
    run = client.create_run(
        experiment_id,
        start_time=started_ms,
        run_name=f"trial-{trial.trial_id}",
        tags={**tags, PARENT_TAG: parent_run_id, TRIAL_TAG: trial.trial_id},
    )
    run_id = run.info.run_id
    summary = [Metric("rounds", trial.rounds, started_ms, 0)]
    if trial.rounds:
        summary += [
            Metric(f"best_{trial.objective.target}", trial.best_score, started_ms, 0),
            Metric("best_round", trial.best_round, started_ms, 0),
        ]
    error_tags = [RunTag("facilflow.error", trial.error[:5000])] if trial.error else []
    client.log_batch(
        run_id,
        metrics=summary,
        params=[Param(k, str(v)) for k, v in trial.hyperparameters.items()],
        tags=error_tags,
    )
    log_history(client, run_id, trial.history, started_ms)
    status = RunStatus.FAILED if trial.status == "FAILED" else RunStatus.FINISHED
    client.set_terminated(
        run_id,
        status=RunStatus.to_string(status),
        end_time=int(1000 * trial.ended_at) if trial.ended_at else None,
    )


def log_png(image: bytes, file_name: str, folder: str = "plots") -> None:
    """A PNG as an artifact of the active run, under `folder/`."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / file_name
        path.write_bytes(image)
        mlflow.log_artifact(str(path), folder)
