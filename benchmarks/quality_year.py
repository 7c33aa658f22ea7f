"""A year of daily realized and estimated quality for the default use case, against the
same realized figures computed by hand.

Every flight of 2013 is scored once, untimed, with the Production version on its
point-in-time features (as the batch asset scores a day), then each day's quality is
computed as monitoring/realized_quality computes it, all days in one run:

  facilflow       - the outcomes read as the training set reads them and joined to the
                    scored flights (known from departure plus the outcome delay), then per
                    day and version: AUC, log loss, Brier, calibration error, precision,
                    recall and the rest, AUC's standard error, and the estimate (AUC,
                    accuracy) from the calibrated scores of every flight scored;
  pandas_sklearn  - the same realized metrics by hand: the outcomes merged in pandas, a
                    group-by of the day, scikit-learn's metrics on each group.
Both run `--repeats` times alternately; the best time counts. Also reported:
how closely the estimate, made without one outcome, tracks the realized AUC across the
days (Pearson correlation and mean absolute error), over every day and over the days the
version never trained on. `--days N` takes the first N days (a smoke run).
Run `make demo` first (or name its working directory with `--home`). Ends with one JSON line.
"""

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
from sklearn import metrics as sk

from facilflow_assets.environment import LOCAL_HOME, Environment
from facilflow_assets.evaluation.calibration import Calibration, logged_calibration
from facilflow_assets.features.feast_assets import historical_features
from facilflow_assets.features.target_rows import entity_frame, labelled_rows, target_rows
from facilflow_assets.monitoring.quality import VERSION, VersionDay, per_version, with_outcomes
from facilflow_assets.resource_map import build_resources
from facilflow_assets.scope import ModelScope
from facilflow_assets.serving.models import PRODUCTION, load, resolve
from facilflow_assets.serving.scoring import resolve_mapping, score
from facilflow_assets.tenants import DEFAULT_TENANT
from facilflow_assets.use_case import load_use_case, use_case_path

REPEATS = 3
SCOPE = ModelScope(DEFAULT_TENANT, "flight_delay")  # the use case `make demo` takes through
USE_CASE = load_use_case(use_case_path(SCOPE.use_case))
THRESHOLD = 0.5
OUTCOME_DELAY = timedelta(hours=24)
AS_OF = datetime(2014, 2, 1, tzinfo=UTC)  # every outcome of 2013 is due
DAY = "_day"


def scored_year(resources, days: int | None) -> tuple[pl.DataFrame, Calibration, str]:
    """Every flight of the calendar's first `days` days (all if None), scored as the batch
    asset scores them; the version's calibration; the version."""
    client = resources.mlflow.client()
    ref = resolve(client, SCOPE.registered_model_name, PRODUCTION)
    model = load(client, ref)
    calibration = logged_calibration(client, client.get_model_version(ref.name, ref.version).run_id)
    if calibration is None:
        raise SystemExit(f"{ref.uri} has no calibration logged; evaluate it with this FacilFlow")
    target = USE_CASE.target
    flights = with_day(target_rows(resources.storage, USE_CASE))
    if days is not None:
        flights = flights.filter(pl.col(DAY) < USE_CASE.calendar.start + timedelta(days=days))
    store = resources.feast.feature_store(SCOPE)
    frame = historical_features(
        store,
        store.get_feature_service(ref.feature_service),
        entity_frame(flights, target, target.lead_minutes, target.time),
    )
    scores = score(model, frame, resolve_mapping(model, {}), "the year's feature frame")
    scored = frame.select(*target.keys, target.time).with_columns(
        pl.Series(USE_CASE.score, scores), pl.lit(ref.version).alias(VERSION)
    )
    return scored, calibration, ref.version


def with_day(rows: pl.DataFrame) -> pl.DataFrame:
    """`rows` with their day in the calendar's time zone, as the daily partitions cut them."""
    local = pl.col(USE_CASE.target.time).dt.convert_time_zone(USE_CASE.calendar.time_zone)
    return rows.with_columns(local.dt.date().alias(DAY))


def facilflow(resources, scored: pl.DataFrame, calibrations: dict) -> dict[str, VersionDay]:
    labelled = labelled_rows(resources.storage, USE_CASE)
    rows = with_day(with_outcomes(scored, labelled, USE_CASE, OUTCOME_DELAY))
    return {
        str(day): version_day
        for (day,), group in rows.group_by(DAY)
        for version_day in per_version(
            group, USE_CASE, AS_OF, dict.fromkeys(calibrations, THRESHOLD), calibrations
        )
    }


def pandas_sklearn(resources, scored: pl.DataFrame) -> dict[str, dict[str, float]]:
    """Realized metrics per day as written by hand: pandas and scikit-learn."""
    target, label, score_column = USE_CASE.target, USE_CASE.label, USE_CASE.score
    on = [*target.keys, target.time]
    outcomes = labelled_rows(resources.storage, USE_CASE).select(*on, label).to_pandas()
    days = with_day(scored).with_columns(pl.col(DAY).cast(pl.String))
    frame = days.to_pandas().merge(outcomes, on=on, how="inner")
    figures = {}
    for day, group in frame.groupby(DAY):
        labels, scores = group[label].to_numpy(int), group[score_column].to_numpy(float)
        decided = (scores >= THRESHOLD).astype(int)
        figures[day] = {
            "auc": sk.roc_auc_score(labels, scores),
            "log_loss": sk.log_loss(labels, np.clip(scores, 1e-7, 1 - 1e-7), labels=[0, 1]),
            "brier": sk.brier_score_loss(labels, scores),
            "precision": sk.precision_score(labels, decided, zero_division=0),
            "recall": sk.recall_score(labels, decided, zero_division=0),
            "f1": sk.f1_score(labels, decided, zero_division=0),
            "accuracy": sk.accuracy_score(labels, decided),
        }
    return figures


def tracking(days: dict[str, VersionDay], on: list[str]) -> dict[str, float]:
    """How closely the estimated AUC follows the realized one over the days `on`."""
    realized = np.array([days[d].metrics["auc"] for d in on])
    estimated = np.array([days[d].estimated["auc"] for d in on])
    return {
        "days": len(on),
        "correlation": round(float(np.corrcoef(realized, estimated)[0, 1]), 3),
        "mae": round(float(np.abs(realized - estimated).mean()), 4),
        "realized_auc_mean": round(float(realized.mean()), 4),
        "estimated_auc_mean": round(float(estimated.mean()), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=LOCAL_HOME, help="working directory")
    parser.add_argument("--days", type=int, help="the calendar's first N days (all if unset)")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="runs of each side (>= 1)")
    arguments = parser.parse_args()
    configured = build_resources(Environment.LOCAL, home=arguments.home.resolve())
    keys = ("storage", "feast", "mlflow")
    with dg.build_resources({key: configured[key] for key in keys}) as resources:
        scored, calibration, version = scored_year(resources, arguments.days)
        sides = {
            "facilflow": lambda: facilflow(resources, scored, {version: calibration}),
            "pandas_sklearn": lambda: pandas_sklearn(resources, scored),
        }
        results, timings = {}, {name: [] for name in sides}
        for _ in range(arguments.repeats):
            for name, run in sides.items():
                started = time.perf_counter()
                results[name] = run()
                timings[name].append(time.perf_counter() - started)
    days, by_hand = results["facilflow"], results["pandas_sklearn"]
    judged = sorted(d for d, v in days.items() if np.isfinite(v.metrics.get("auc", np.nan)))
    splits = USE_CASE.splits
    unseen = [  # the days outside the version's training months
        d
        for d in judged
        if not splits.train_start.isoformat() <= d < splits.validation_start.isoformat()
    ]
    facilflow_s, peer_s = min(timings["facilflow"]), min(timings["pandas_sklearn"])
    difference = max(
        abs(days[d].metrics[name] - value) for d in by_hand for name, value in by_hand[d].items()
    )
    figures = {
        "days": len(days),
        "rows_scored": sum(v.scored for v in days.values()),
        "rows_labelled": sum(v.labelled for v in days.values()),
        "model_version": version,
        "facilflow_s": round(facilflow_s, 3),
        "pandas_sklearn_s": round(peer_s, 3),
        "ratio": round(facilflow_s / peer_s, 3),
        "max_abs_difference": float(difference),
        "estimate_vs_realized_auc": tracking(days, judged),
        "estimate_vs_realized_auc_unseen_days": tracking(days, unseen) if len(unseen) > 1 else None,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
