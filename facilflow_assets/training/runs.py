"""Runs of an experiment side by side: parameters and metrics in one table."""

import polars as pl
from mlflow.entities import Run
from mlflow.tracking import MlflowClient


class NoSuchMetricError(ValueError):
    """The metric to rank by is not recorded on any run of the experiment."""


LOWER_IS_BETTER = ("rmse", "mae", "loss", "bias")  # metrics named for an error


def lower_is_better(metric: str) -> bool:
    """Whether `metric` names an error (valid_rmse, holdout_log_loss): ranked lowest first."""
    return any(part in metric for part in LOWER_IS_BETTER)


def compare_runs(
    client: MlflowClient,
    experiment_id: str,
    metric: str | None = None,
    top: int = 10,
    parent_run_id: str | None = None,
    ascending: bool = False,
    trials: bool = False,
) -> pl.DataFrame:
    """The experiment's top `top` training runs by `metric` (highest first, lowest first
    with `ascending`, as for an error; newest first without a metric), their search's
    trials among them with `trials`, or only the runs nested under `parent_run_id` (a
    tuning run's trials).

    One row per run; columns are the run's id and name, every metric any of the runs has
    (the ranking metric first), its status and duration, then every parameter.
    """
    direction = "ASC" if ascending else "DESC"
    order = [f"metrics.`{metric}` {direction}"] if metric else ["attributes.start_time DESC"]
    if parent_run_id:  # every trial, failed ones (without the metric) last
        filter_string = f"tags.`mlflow.parentRunId` = '{parent_run_id}'"
    else:
        conditions = [] if trials else ["tags.`mlflow.parentRunId` IS NULL"]
        conditions += [f"metrics.`{metric}` > -1e308"] if metric else []
        filter_string = " AND ".join(conditions)
    runs = client.search_runs(
        [experiment_id], filter_string=filter_string, order_by=order, max_results=top
    )
    if metric and not runs:
        recorded = sorted({k for r in client.search_runs([experiment_id]) for k in r.data.metrics})
        raise NoSuchMetricError(
            f"no run of experiment {experiment_id} records the metric '{metric}'; "
            f"recorded metrics: {', '.join(recorded) or 'none'}"
        )
    params = sorted({k for run in runs for k in run.data.params})
    metrics = sorted({k for run in runs for k in run.data.metrics}, key=lambda k: (k != metric, k))
    return pl.DataFrame(
        [_row(run, params, metrics) for run in runs],
        schema={
            "run_id": pl.String,
            "run_name": pl.String,
            **{f"metric.{m}": pl.Float64 for m in metrics},
            "status": pl.String,
            "duration_s": pl.Float64,
            **{f"param.{p}": pl.String for p in params},
        },
        orient="row",
    )


def _row(run: Run, params: list[str], metrics: list[str]) -> list:
    info = run.info
    duration = (info.end_time - info.start_time) / 1000 if info.end_time else None
    return [
        info.run_id[:8],
        info.run_name,
        *(run.data.metrics.get(m) for m in metrics),
        info.status,
        duration,
        *(run.data.params.get(p) for p in params),
    ]
