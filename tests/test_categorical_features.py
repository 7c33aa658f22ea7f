"""A text feature is a category all the way: learned from the train slice, given to
LightGBM as a categorical feature, carried inside the model file, encoded the same way
wherever the model predicts (a value it never saw counts as missing), and compared as a
category by the drift tests."""

from datetime import UTC, datetime, timedelta

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from facilflow_assets.drift.statistics import column_drift
from facilflow_assets.training.boosting import boost, frame_predictions, model_categories
from facilflow_assets.training.dataset import (
    TIME_COLUMN,
    TrainingDataError,
    feature_matrix,
    split_training_data,
)
from facilflow_assets.training.objective import OBJECTIVES

CARRIER, WIND, LABEL = "flight__carrier_code", "weather__wind_speed_mph", "is_delayed"
START = datetime(2013, 1, 1, tzinfo=UTC)
# Each carrier's delay rate: the label depends on the category, not on its code's order.
RATES = {"UA": 0.6, "AA": 0.1, "DL": 0.5, "B6": 0.05, "EV": 0.7}


def _flights(rows: int, seed: int, carriers=tuple(RATES)) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    carrier = rng.choice(carriers, rows)
    rate = np.array([RATES.get(c, 0.3) for c in carrier])
    return pl.DataFrame(
        {
            TIME_COLUMN: [
                START + timedelta(hours=int(h)) for h in np.sort(rng.integers(0, 8000, rows))
            ],
            CARRIER: carrier,
            WIND: rng.normal(10, 3, rows),
            LABEL: (rng.random(rows) < rate).astype(np.int8),
        }
    ).with_columns(
        pl.when(pl.int_range(pl.len()) % 50 == 0)
        .then(None)
        .otherwise(pl.col(CARRIER))
        .alias(CARRIER)
    )


def _trained():
    frame = _flights(6000, seed=1)
    dates = [START + timedelta(days=d) for d in (0, 220, 280)]
    data = split_training_data(frame, "flights", LABEL, *dates)
    booster = boost(
        OBJECTIVES["binary"],
        {"num_threads": 1, "verbose": -1, "min_data_per_group": 5, "cat_smooth": 1},
        (data.train.features, data.train.labels),
        (data.validation.features, data.validation.labels),
        30,
        lambda *_: None,
        data.feature_names,
        categories=data.categories,
    )
    return data, booster


def test_a_text_feature_is_learned_as_categories_and_travels_inside_the_model():
    data, booster = _trained()
    carriers = data.categories[CARRIER]
    assert sorted(carriers) == sorted(RATES)  # nulls are not a category
    train = data.train.frame
    counts = train[CARRIER].drop_nulls().value_counts()
    assert counts.filter(pl.col(CARRIER) == carriers[0])["count"][0] == counts["count"].max()
    # Written with the model and read back: the same categories, for the same feature.
    reloaded = lgb.Booster(model_str=booster.model_to_string())
    assert model_categories(reloaded) == model_categories(booster) == {CARRIER: carriers}
    holdout = data.holdout.frame
    scores = frame_predictions(reloaded, holdout)
    assert roc_auc_score(holdout[LABEL], scores) > 0.75
    np.testing.assert_allclose(scores, booster.predict(data.holdout.features))


def test_a_category_never_seen_and_a_null_are_both_missing_to_the_model():
    data, booster = _trained()
    rows = pl.DataFrame({CARRIER: ["HA", None, "UA"], WIND: [10.0, 10.0, 10.0]})
    matrix = feature_matrix(rows, data.feature_names, data.categories)
    position = data.feature_names.index(CARRIER)
    assert np.isnan(matrix[0, position]) and np.isnan(matrix[1, position])
    assert matrix[2, position] == data.categories[CARRIER].index("UA")
    unseen, missing, known = frame_predictions(booster, rows)
    assert unseen == pytest.approx(missing) and known != pytest.approx(missing)


def test_text_given_to_a_model_without_categories_is_refused_by_name():
    with pytest.raises(TrainingDataError, match=f"the feature\\(s\\) {CARRIER} are text"):
        feature_matrix(_flights(10, seed=3), [CARRIER, WIND])


def test_a_category_drifts_when_its_mix_changes_and_not_when_it_does_not():
    reference = _flights(5000, seed=4)
    same = _flights(2000, seed=5)
    shifted = _flights(2000, seed=6, carriers=("UA", "UA", "UA", "HA"))
    steady = column_drift(reference, same, [CARRIER], 0.5, "a day like the others")
    [carrier] = steady.columns
    assert carrier.test in {"jensenshannon", "chisquare"} and not carrier.drifted
    [carrier] = column_drift(reference, shifted, [CARRIER], 0.5, "a day of UA").columns
    assert carrier.drifted
