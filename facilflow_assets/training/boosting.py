"""The LightGBM loop shared by tuning trials and Ray Train workers, and its checkpoints."""

import json
from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl

from facilflow_assets.training.dataset import feature_matrix
from facilflow_assets.training.objective import Objective

MODEL_FILE = "model.txt"
HISTORY_FILE = "history.json"

RoundCallback = Callable[[int, dict[str, float], lgb.Booster], None]


def boost(
    objective: Objective,
    params: dict,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    rounds: int,
    on_round: RoundCallback,
    feature_names: list[str],
    init_model: lgb.Booster | None = None,
    categories: dict[str, list[str]] | None = None,
) -> lgb.Booster:
    """Train up to `rounds` rounds in all (counting `init_model`'s); after each round
    `on_round(round, {metric: value}, booster)` is called with the objective's round
    metrics (valid_auc, valid_logloss for a binary task), rounds counted from 1. The
    `categories` of text features go into the model, where `model_categories` reads them."""
    done = init_model.current_iteration() if init_model is not None else 0
    categories = categories or {}
    categorical = [i for i, name in enumerate(feature_names) if name in categories]
    train_set = lgb.Dataset(
        train[0],
        label=train[1],
        feature_name=feature_names,
        categorical_feature=categorical,
        free_raw_data=False,
    )
    # LightGBM's own slot for a frame's categories, written with the model and read back.
    train_set.pandas_categorical = [categories[feature_names[i]] for i in categorical] or None
    valid_set = lgb.Dataset(validation[0], label=validation[1], reference=train_set)

    def report(env: lgb.callback.CallbackEnv) -> None:
        # lgb.train's: one booster, and each round's results on the validation set
        if not isinstance(env.model, lgb.Booster) or env.evaluation_result_list is None:
            raise TypeError(f"LightGBM called back with {env.model!r} and no round results")
        metrics = {
            objective.round_metrics[result[1]]: result[2] for result in env.evaluation_result_list
        }
        on_round(env.iteration + 1, metrics, env.model)

    booster = lgb.train(
        {**objective.params(), **params},
        train_set,
        num_boost_round=rounds - done,
        valid_sets=[valid_set],
        valid_names=["valid"],
        init_model=init_model,
        callbacks=[report],
        keep_training_booster=True,
    )
    booster.params["categorical_feature"] = categorical  # as a model read back has it
    return booster


def model_categories(booster: lgb.Booster) -> dict[str, list[str]]:
    """The categories of the model's text features, by feature name."""
    names = booster.feature_name()
    categorical = booster.params.get("categorical_feature") or []
    return {
        names[i]: values
        for i, values in zip(categorical, booster.pandas_categorical or [], strict=True)
    }


def dense_predictions(booster: lgb.Booster, rows: np.ndarray) -> np.ndarray:
    """The booster's predictions for `rows`, one per row (LightGBM answers with a sparse
    matrix only for the feature contributions of sparse rows)."""
    predictions = booster.predict(rows)
    if not isinstance(predictions, np.ndarray):
        raise TypeError(f"LightGBM predicted a {type(predictions).__name__}, not an array")
    return predictions


def frame_predictions(booster: lgb.Booster, rows: pl.DataFrame) -> np.ndarray:
    """The booster's predictions for a frame holding its features by name."""
    features = booster.feature_name()
    return dense_predictions(booster, feature_matrix(rows, features, model_categories(booster)))


def save_checkpoint(directory: Path, booster: lgb.Booster, history: dict[str, list]) -> None:
    """The model in LightGBM's text format and the per-round metrics so far."""
    booster.save_model(str(directory / MODEL_FILE))
    (directory / HISTORY_FILE).write_text(json.dumps(history))


def load_checkpoint(directory: Path) -> tuple[lgb.Booster, dict[str, list]]:
    booster = lgb.Booster(model_file=str(directory / MODEL_FILE))
    return booster, json.loads((directory / HISTORY_FILE).read_text())


def append_round(history: dict[str, list], metrics: dict[str, float]) -> None:
    for name, value in metrics.items():
        history.setdefault(name, []).append(float(value))
