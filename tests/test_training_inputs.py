"""Bad training input gets a clear error before any Ray or MLflow work starts."""

import time

import dagster as dg
import polars as pl
import pytest

from facilflow_assets.atomic_files import write_parquet_atomic
from facilflow_assets.search_space import DEFAULT_SEARCH_SPACE
from facilflow_assets.training.candidate import CANDIDATE_FILE
from facilflow_assets.training.config import TrainingConfig, parse_utc, training_config_for
from facilflow_assets.training.dataset import TrainingDataError, split_training_data
from facilflow_assets.use_case import TrainingSpec
from resources import MlflowResource, TrackingUnavailableError
from tests.lifecycle import lifecycle
from tests.mlflow_server import free_port
from tests.training_data import synthetic_training_set

START, VALIDATION, HOLDOUT = (parse_utc(d) for d in ("2013-01-01", "2013-10-01", "2013-11-01"))
# The flight-delay use case's training config: its feature service and splits are the defaults.
FlightDelayConfig = training_config_for(lifecycle().use_case)


def _split(frame: pl.DataFrame):
    return split_training_data(frame, "flights.parquet", "is_delayed", START, VALIDATION, HOLDOUT)


def test_a_good_set_splits_in_time_without_overlap():
    data = _split(synthetic_training_set())
    assert data.train.frame["event_timestamp"].max() < VALIDATION
    assert data.validation.frame["event_timestamp"].min() >= VALIDATION
    assert data.holdout.frame["event_timestamp"].min() >= HOLDOUT
    assert data.train.rows + data.validation.rows + data.holdout.rows == 6000
    assert data.feature_names == [
        "weather_hourly__wind_speed_mph",
        "carrier_history__carrier_delay_rate_7d",
        "flight_calendar__departure_hour",
        "weather_hourly__noise",
    ]
    assert data.train.features.shape == (data.train.rows, 4)


def test_an_empty_training_set_is_refused():
    with pytest.raises(TrainingDataError, match="flights.parquet is empty"):
        _split(synthetic_training_set().clear())


def test_a_label_with_one_class_is_refused():
    frame = synthetic_training_set().with_columns(is_delayed=pl.lit(0, pl.Int32))
    with pytest.raises(TrainingDataError, match="single class \\(0\\) in the train slice"):
        _split(frame)


def test_missing_label_values_are_named_by_row():
    frame = synthetic_training_set().with_columns(
        is_delayed=pl.when(pl.int_range(pl.len()).is_in([7, 42])).then(None).otherwise("is_delayed")
    )
    with pytest.raises(TrainingDataError, match="2 row\\(s\\) have no value .*first rows: 7, 42"):
        _split(frame)


def test_a_label_other_than_zero_or_one_names_the_row():
    frame = synthetic_training_set().with_columns(
        is_delayed=pl.when(pl.int_range(pl.len()) == 3).then(5).otherwise("is_delayed")
    )
    with pytest.raises(TrainingDataError, match="must be 0 or 1; row 3 holds 5"):
        _split(frame)


def test_rows_before_train_start_are_in_no_slice():
    frame = synthetic_training_set()
    later = parse_utc("2013-03-01")
    data = split_training_data(frame, "flights.parquet", "is_delayed", later, VALIDATION, HOLDOUT)
    assert data.train.frame["event_timestamp"].min() >= later
    earlier = frame.filter(frame["event_timestamp"] < later).height
    assert earlier > 0
    assert data.train.rows + data.validation.rows + data.holdout.rows == 6000 - earlier


def test_a_split_date_past_the_data_names_the_empty_slice():
    with pytest.raises(TrainingDataError, match="the holdout slice is empty"):
        split_training_data(
            synthetic_training_set(),
            "flights.parquet",
            "is_delayed",
            START,
            VALIDATION,
            parse_utc("2014-06-01"),
        )


def test_an_unknown_hyperparameter_is_refused_with_a_suggestion():
    with pytest.raises(ValueError, match="unknown hyperparameter 'num_leafs' \\(did you mean"):
        FlightDelayConfig(
            search_space={"num_leafs": {"distribution": "randint", "low": 8, "high": 64}}
        )


@pytest.mark.parametrize(
    ("dimension", "message"),
    [
        ({"distribution": "normal", "low": 0, "high": 1}, "'normal' is not one of"),
        ({"distribution": "uniform", "low": 1, "high": 0}, "needs low < high"),
        ({"distribution": "loguniform", "low": 0, "high": 1}, "needs low > 0"),
        ({"distribution": "choice", "values": []}, "non-empty 'values'"),
    ],
)
def test_a_malformed_search_dimension_says_what_is_wrong(dimension, message):
    with pytest.raises(ValueError, match=message):
        FlightDelayConfig(search_space={"learning_rate": dimension})


def test_a_grace_period_longer_than_the_rounds_is_refused():
    with pytest.raises(ValueError, match="grace_rounds \\(50\\) must not exceed max_rounds"):
        FlightDelayConfig(max_rounds=40, grace_rounds=50)


def test_split_dates_out_of_order_are_refused():
    with pytest.raises(ValueError, match="validation_start .* must come before holdout_start"):
        FlightDelayConfig(validation_start="2013-12-01", holdout_start="2013-11-01")
    with pytest.raises(ValueError, match="train_start .* must come before validation_start"):
        FlightDelayConfig(train_start="2013-10-15")


def test_the_use_case_files_search_and_budget_are_the_defaults_a_run_overrides():
    use_case = lifecycle("airport_rain").use_case
    space = {"num_leaves": {"distribution": "choice", "values": [15, 31]}}
    searched = use_case.model_copy(
        update={
            "training": TrainingSpec.model_validate(
                {"search_space": space, "num_trials": 3, "max_rounds": 80, "grace_rounds": 10}
            )
        }
    )
    config = training_config_for(searched)()
    assert (config.num_trials, config.max_rounds, config.grace_rounds) == (3, 80, 10)
    assert set(config.search_space) == {"num_leaves"}
    assert config.search_space["num_leaves"].values == [15, 31]
    assert training_config_for(searched)(num_trials=1).num_trials == 1
    assert set(training_config_for(use_case)().search_space) == set(DEFAULT_SEARCH_SPACE)


def test_each_use_case_has_its_own_defaults_and_the_base_config_has_none():
    for name in ("flight_delay", "airport_rain"):
        use_case = lifecycle(name).use_case
        config = training_config_for(use_case)()
        # Empty: the service version of the use case's current features, found at run time.
        assert config.feature_service == ""
        splits = use_case.splits
        assert (config.train_start, config.validation_start, config.holdout_start) == (
            splits.train_start.isoformat(),
            splits.validation_start.isoformat(),
            splits.holdout_start.isoformat(),
        )
    with pytest.raises(ValueError, match="feature_service"):
        TrainingConfig(
            train_start="2013-01-01", validation_start="2013-10-01", holdout_start="2013-11-01"
        )
    given = TrainingConfig(
        feature_service="flight_delay_v1",
        train_start="2013-01-01",
        validation_start="2013-10-01",
        holdout_start="2013-11-01",
    )
    assert given.split_dates() == (START, VALIDATION, HOLDOUT)


def test_an_unknown_hyperparameter_in_run_config_fails_the_step_before_any_work(
    local_resources, facilflow_home
):
    dimension = {"distribution": "uniform", "low": 0.01, "high": 0.2}
    flight_delay = lifecycle()
    run_config = {
        "ops": {
            flight_delay.op("trained_model"): {
                "config": {"search_space": {"lerning_rate": dimension}}
            }
        }
    }
    result = dg.materialize(
        [flight_delay.asset("trained_model")],
        resources=local_resources,
        run_config=run_config,
        raise_on_error=False,
    )
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error
    assert "unknown hyperparameter 'lerning_rate' (did you mean 'learning_rate'?)" in str(
        error.to_string()
    )
    assert not (facilflow_home / "mlflow").exists()


def test_an_unreachable_tracking_server_fails_before_training(local_resources, facilflow_home):
    flight_delay = lifecycle()
    files = local_resources["storage"].files(flight_delay.scope)
    write_parquet_atomic(
        synthetic_training_set(), files.training_set_path(flight_delay.use_case.feature_service)
    )
    url = f"http://127.0.0.1:{free_port()}"
    resources = {
        **local_resources,
        "mlflow": MlflowResource(tracking_uri=url, artifact_root="mlflow-artifacts:/"),
    }
    started = time.monotonic()
    result = dg.materialize(
        [flight_delay.asset("trained_model")], resources=resources, raise_on_error=False
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure.cause.cls_name == TrackingUnavailableError.__name__
    assert url in failure.cause.message
    assert time.monotonic() - started < 30
    assert not (facilflow_home / "ray").exists()  # no search was started
    assert not (files.models_dir / CANDIDATE_FILE).exists()
