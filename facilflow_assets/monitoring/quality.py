"""Realized quality: how right each version was on a day, once the outcomes of what it
scored are known.

A day's scored rows (the batch predictions, each with the version that scored it) are
joined on the target's keys and time with the use case's labels, read as the training set
reads them. An outcome counts only from when it is known: the row's time, plus the label's
look-ahead, plus the delay with which outcomes reach the warehouse. A day is judged only
when every scored row's outcome is due by the time of judging; until then its figures are
shown but not held against the version.

One day is a sample: a few hundred outcomes give an AUC within a few hundredths of the
model's true one. A version is held to have degraded only when even the favourable end of
the day's figure (two standard errors) is past the allowed margin, so a day's noise does
not page anyone.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from facilflow_assets.evaluation.calibration import Calibration
from facilflow_assets.evaluation.metrics import SCORING
from facilflow_assets.monitoring.estimated_quality import expected_metrics
from facilflow_assets.use_case import UseCase

KNOWN_AT = "_outcome_known_at"
VERSION = "model_version"
NOISE_STANDARD_ERRORS = 2.0


@dataclass(frozen=True)
class VersionDay:
    """One version's figures on one day."""

    version: str
    scored: int
    labelled: int
    metrics: dict[str, float]  # on the labelled rows; empty when there are none
    standard_error: float = float("nan")  # of the task's primary metric on the day
    # From every scored row's calibrated score, outcomes or not; empty without a calibration
    estimated: dict[str, float] = field(default_factory=dict)
    decision_threshold: float | None = None  # binary: where the metrics decided

    @property
    def coverage(self) -> float:
        return self.labelled / self.scored if self.scored else 0.0


@dataclass(frozen=True)
class Judgement:
    """A version's day against its holdout, on the task's primary metric."""

    metric: str
    value: float
    holdout: float
    degraded: bool
    reason: str  # why it was judged so, or why it was not judged


def with_outcomes(
    scored: pl.DataFrame, labelled: pl.DataFrame, use_case: UseCase, delay: timedelta
) -> pl.DataFrame:
    """The scored rows with their label (null where there is none) and when it is known."""
    target = use_case.target
    on = [*target.keys, target.time]
    outcomes = labelled.select(*on, use_case.label).unique(on, keep="first")
    return scored.join(outcomes, on=on, how="left", nulls_equal=True).with_columns(
        (pl.col(target.time) + target.label.known_after + delay).alias(KNOWN_AT)
    )


def outcomes_due(rows: pl.DataFrame, as_of: datetime) -> bool:
    """Whether every row's outcome is due by `as_of`."""
    return bool(rows.select((pl.col(KNOWN_AT) <= as_of).all()).item())


def per_version(
    rows: pl.DataFrame,
    use_case: UseCase,
    as_of: datetime,
    thresholds: Mapping[str, float] | None = None,
    calibrations: Mapping[str, Calibration] | None = None,
) -> list[VersionDay]:
    """Each version's rows scored and labelled, its metrics on the labelled ones (those
    whose outcome is known by `as_of`) at its decision threshold (0.5 where none is given)
    and, for a version with a calibration, its metrics estimated from all its scores."""
    label, score = use_case.label, use_case.score
    calibrations = calibrations or {}
    found = []
    for (version,), group in rows.sort(VERSION).group_by(VERSION, maintain_order=True):
        threshold = (thresholds or {}).get(str(version), 0.5)
        known = group.filter(pl.col(label).is_not_null() & (pl.col(KNOWN_AT) <= as_of))
        metrics, error = {}, float("nan")
        if known.height:
            labels = known[label].cast(pl.Float64).to_numpy()
            scores = known[score].cast(pl.Float64).to_numpy()
            metrics = SCORING[use_case.task].metrics(labels, scores, threshold)
            error = standard_error(use_case.task, labels, scores, metrics)
        estimated = {}
        if (calibration := calibrations.get(str(version))) is not None:
            all_scores = group[score].cast(pl.Float64).to_numpy()
            estimated = expected_metrics(all_scores, calibration, threshold)
        found.append(
            VersionDay(
                str(version),
                group.height,
                known.height,
                metrics,
                error,
                estimated,
                threshold if use_case.task == "binary" else None,
            )
        )
    return found


def standard_error(
    task: str, labels: np.ndarray, predictions: np.ndarray, metrics: dict[str, float]
) -> float:
    """The sampling error of the primary metric: Hanley and McNeil's for AUC; for RMSE, the
    delta method's from the spread of the squared errors."""
    if task == "binary":
        auc, positives = metrics["auc"], int(labels.sum())
        negatives = len(labels) - positives
        if not np.isfinite(auc) or not positives or not negatives:
            return float("nan")
        q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
        variance = (
            auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)
        ) / (positives * negatives)
        return float(np.sqrt(max(variance, 0.0)))
    squared = (predictions - labels) ** 2
    rmse = metrics["rmse"]
    if len(squared) < 2 or rmse == 0:
        return float("nan")
    return float(squared.std(ddof=1) / np.sqrt(len(squared)) / (2 * rmse))


def judge(
    day: VersionDay,
    holdout: dict[str, float],
    task: str,
    max_degradation: float,
    min_labelled: int,
) -> Judgement:
    """Degraded when the day's primary metric is worse than the holdout's by more than
    `max_degradation` of it (0.05: 5%) beyond the day's sampling noise, with at least
    `min_labelled` outcomes."""
    scoring = SCORING[task]
    metric = scoring.primary
    value, reference = day.metrics.get(metric, float("nan")), holdout.get(metric, float("nan"))
    if day.labelled < min_labelled:
        reason = f"{day.labelled} outcome(s), fewer than the {min_labelled} needed to judge"
        return Judgement(metric, value, reference, False, reason)
    if not np.isfinite(reference):
        return Judgement(metric, value, reference, False, f"no holdout {metric} recorded")
    if not np.isfinite(value):
        return Judgement(metric, value, reference, False, f"{metric} undefined on the day")
    noise = NOISE_STANDARD_ERRORS * day.standard_error if np.isfinite(day.standard_error) else 0
    if scoring.higher_is_better:
        limit = reference * (1 - max_degradation)
        degraded = value + noise < limit
    else:
        limit = reference * (1 + max_degradation)
        degraded = value - noise > limit
    comparison = "worse than" if degraded else "within"
    reason = (
        f"{metric} {value:.4f} ± {noise:.4f} on {day.labelled:,} outcomes, {comparison} the "
        f"holdout's {reference:.4f} less the margin (limit {limit:.4f})"
    )
    return Judgement(metric, value, reference, degraded, reason)
