"""The realized-quality judgement on small frames: outcomes count only once known, each
version is judged on its own rows, and a day is held against a version only with enough
outcomes and a holdout figure to compare with."""

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from facilflow_assets.monitoring.quality import (
    VersionDay,
    judge,
    outcomes_due,
    per_version,
    with_outcomes,
)
from tests.lifecycle import lifecycle

USE_CASE = lifecycle().use_case  # flight delay: binary, label is_delayed, keyed by flight
T0 = datetime(2013, 6, 15, 8, tzinfo=UTC)


def _scored(versions: list[str], scores: list[float]) -> pl.DataFrame:
    rows = len(scores)
    keys = {key: [f"{key}-{i}" for i in range(rows)] for key in USE_CASE.target.keys}
    return pl.DataFrame(
        {
            **keys,
            USE_CASE.target.time: [T0 + timedelta(hours=i) for i in range(rows)],
            USE_CASE.score: scores,
            "model_version": versions,
        }
    )


def _labelled(scored: pl.DataFrame, labels: list[int | None]) -> pl.DataFrame:
    return scored.select(*USE_CASE.target.keys, USE_CASE.target.time).with_columns(
        pl.Series(USE_CASE.label, labels, pl.Int8)
    )


def test_outcomes_count_once_known_and_each_version_gets_its_own_rows():
    scored = _scored(["1", "1", "2", "2"], [0.9, 0.2, 0.8, 0.1])
    labelled = _labelled(scored, [1, 0, None, 0])  # version 2's first outcome is missing
    rows = with_outcomes(scored, labelled, USE_CASE, timedelta(hours=24))
    late = T0 + timedelta(days=2)
    assert outcomes_due(rows, late) and not outcomes_due(rows, T0 + timedelta(hours=25))
    one, two = per_version(rows, USE_CASE, late)
    assert (one.version, one.scored, one.labelled, one.metrics["auc"]) == ("1", 2, 2, 1.0)
    assert (two.version, two.scored, two.labelled) == ("2", 2, 1)
    assert two.metrics["auc"] != two.metrics["auc"]  # one class only: AUC undefined
    # Before the outcomes are due, none counts.
    [early, _] = per_version(rows, USE_CASE, T0 + timedelta(hours=24, minutes=30))
    assert (early.scored, early.labelled) == (2, 1)  # the 8:00 flight's outcome, not 9:00's


@pytest.mark.parametrize(
    ("auc", "labelled", "holdout", "degraded", "reason"),
    [
        (0.60, 500, {"auc": 0.70}, True, "worse than the holdout"),
        (0.68, 500, {"auc": 0.70}, False, "within the holdout"),
        (0.40, 50, {"auc": 0.70}, False, "fewer than the 200 needed"),
        (0.40, 500, {}, False, "no holdout auc recorded"),
        (float("nan"), 500, {"auc": 0.70}, False, "auc undefined on the day"),
    ],
)
def test_a_day_is_held_against_a_version_only_when_it_can_be(
    auc, labelled, holdout, degraded, reason
):
    day = VersionDay("3", 600, labelled, {"auc": auc})
    judgement = judge(day, holdout, "binary", 0.05, 200)
    assert judgement.degraded is degraded and reason in judgement.reason


def test_a_regression_is_judged_on_rmse_lower_being_better():
    day = VersionDay("1", 400, 400, {"rmse": 12.0})
    assert judge(day, {"rmse": 10.0}, "regression", 0.1, 200).degraded
    assert not judge(day, {"rmse": 11.5}, "regression", 0.1, 200).degraded
