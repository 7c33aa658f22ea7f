"""What a regression task changes, piece by piece, on small frames: the label's checks, the
objective, the metrics and the gate, the grouped-mean baseline, the endpoint's answer
field. The whole path on real data is in test_model_lifecycle.py and test_serving.py."""

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
import yaml

from facilflow_assets.evaluation.baseline import historical_mean_baseline
from facilflow_assets.evaluation.metrics import SCORING, regression_metrics
from facilflow_assets.evaluation.report import EvaluationConfig, judge
from facilflow_assets.feature_spec import FeatureSpecError
from facilflow_assets.training.dataset import TrainingDataError, split_training_data
from facilflow_assets.training.objective import OBJECTIVES
from facilflow_assets.use_case import BaselineSpec, GatesSpec, load_use_case, use_case_path

START = datetime(2013, 1, 1, tzinfo=UTC)
SPLITS = (START, START + timedelta(days=20), START + timedelta(days=25))


def _frame(labels: list[float]) -> pl.DataFrame:
    rows = len(labels)
    return pl.DataFrame(
        {
            "event_timestamp": [START + timedelta(days=30 * i / rows) for i in range(rows)],
            "view__x": np.linspace(0, 1, rows),
            "minutes": labels,
        }
    )


def test_a_regression_label_may_be_any_finite_amount_but_not_missing_or_infinite():
    data = split_training_data(
        _frame([float(i % 7) * 10 - 5 for i in range(60)]),
        "set",
        "minutes",
        *SPLITS,
        task="regression",
    )
    assert data.objective.target == "valid_rmse" and data.objective.mode == "min"
    assert data.train.labels.dtype == np.float64 and data.train.labels.min() == -5
    with pytest.raises(TrainingDataError, match="must be a finite number; row 3 holds inf"):
        split_training_data(
            _frame([1.0, 2.0, 3.0, float("inf")] + [1.0] * 56),
            "set",
            "minutes",
            *SPLITS,
            task="regression",
        )
    with pytest.raises(TrainingDataError, match="must be 0 or 1; row 0 holds 12.5"):
        split_training_data(_frame([12.5] * 60), "set", "minutes", *SPLITS, task="binary")
    with pytest.raises(TrainingDataError, match="single value .* nothing to learn"):
        split_training_data(_frame([4.0] * 60), "set", "minutes", *SPLITS, task="regression")


def test_the_objective_picks_the_lowest_error_round_and_the_highest_auc_round():
    regression, binary = OBJECTIVES["regression"], OBJECTIVES["binary"]
    assert regression.params()["objective"] == "regression"
    assert regression.params()["metric"] == ["rmse", "l1"]
    assert regression.best_round([30.0, 28.0, 29.0]) == 2
    assert regression.ranks_above(28.0, 29.0) and not regression.ranks_above(30.0, 29.0)
    assert binary.best_round([0.70, 0.74, 0.73]) == 2 and binary.best([0.7, 0.74]) == 0.74


def test_regression_metrics_and_the_rmse_gate_against_the_baseline():
    actual = np.array([0.0, 10.0, 20.0, 30.0])
    metrics = regression_metrics(actual, actual + np.array([2.0, -2.0, 2.0, -2.0]))
    assert metrics["rmse"] == pytest.approx(2.0) and metrics["mae"] == pytest.approx(2.0)
    assert metrics["bias"] == pytest.approx(0.0) and 0.9 < metrics["r2"] < 1
    scoring = SCORING["regression"]
    assert scoring.primary == "rmse"
    lift = scoring.lift({"rmse": 8.0}, {"rmse": 10.0})
    assert lift == pytest.approx(0.2)  # 20% lower error than the baseline
    config = EvaluationConfig(min_rmse_lift=0.25, max_rmse=7.5).gates(GatesSpec())
    thresholds, failures = judge({"rmse": 8.0}, "rmse", lift, config)
    assert thresholds == {"min_rmse_lift": 0.25, "max_rmse": 7.5}
    assert failures == [
        "RMSE reduction against the baseline +0.2000 is below min_rmse_lift +0.25",
        "RMSE 8.0000 is above max_rmse 7.5",
    ]
    assert judge({"rmse": 8.0}, "rmse", lift, GatesSpec()) == ({"min_rmse_lift": 0.0}, [])


def test_the_grouped_mean_baseline_shrinks_small_groups_toward_the_coarser_mean():
    train = pl.DataFrame(
        {
            "route": ["A"] * 4 + ["B"] * 2,
            "hour": [8, 8, 9, 9, 8, 8],
            "minutes": [10.0, 30.0, 0.0, 0.0, 50.0, 70.0],
        }
    )
    holdout = pl.DataFrame({"route": ["A", "B", "C"], "hour": [8, 8, 8]})
    spec = BaselineSpec(name="m", description="d", group_by=["route", "hour"], prior_rows=2)
    predictions = historical_mean_baseline(train, holdout, "minutes", spec).predictions
    # A at 8: (10 + 30 + 2 * mean(A) 10) / (2 + 2) = 15; B: its own mean 60 either way; C
    # has no rows at all: the overall mean, 26.67.
    np.testing.assert_allclose(predictions, [15.0, 60.0, 160 / 6])


def test_a_regression_answers_predicted_label_and_refuses_a_thresholded_label(tmp_path):
    arrival = load_use_case(use_case_path("arrival_delay"))
    assert (arrival.task, arrival.answer_field) == ("regression", "predicted_arrival_delay_minutes")
    assert load_use_case(use_case_path("flight_delay")).answer_field == "is_delayed"
    document = yaml.safe_load(use_case_path("arrival_delay").read_text())
    document["target"]["label"] = {"column": "arrival_delay_minutes", "above": 15, "name": "late"}
    path = tmp_path / "arrival_delay.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(
        FeatureSpecError,
        match="field 'above': a regression predicts the amount itself; a comparison makes",
    ):
        load_use_case(path)
