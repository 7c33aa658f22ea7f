"""`facilflow use-cases check FILE --data` against the demo's warehouse: the shipped use
case fits its data and its class balance is shown; each wrong variant of it, a mistake a
new user makes, is refused with the file and the field named, one mistake per line."""

import copy
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from click.testing import CliRunner

from facilflow_assets.cli import main
from facilflow_assets.definitions import use_case_definitions
from facilflow_assets.environment import Environment
from facilflow_assets.resource_map import build_resources
from facilflow_assets.scope import ModelScope
from facilflow_assets.use_case import load_use_case, use_case_path

pytestmark = pytest.mark.slow

SHIPPED = yaml.safe_load(use_case_path("flight_delay").read_text())


def _check(home: Path, path: Path):
    return CliRunner().invoke(
        main, ["--home", str(home), "use-cases", "check", str(path), "--data"]
    )


def _variant(tmp_path: Path, change) -> Path:
    spec = copy.deepcopy(SHIPPED)
    change(spec)
    path = tmp_path / "flight_delay.yaml"  # a file is named after its use case
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _table(spec: dict, name: str) -> dict:
    return next(t for t in spec["tables"] if t["name"] == name)


def test_the_shipped_use_case_fits_the_warehouse_and_shows_its_class_balance(built_home):
    out = _check(built_home.home, use_case_path("flight_delay"))
    assert out.exit_code == 0, out.output
    assert "the warehouse's data fits the file" in out.output
    assert "train: rows 195,613, positive_share 0.2384" in out.output
    assert "holdout: rows " in out.output


def _no_label(spec):
    spec["target"]["label"]["column"] = "is_late"


def _delay_minutes_as_a_binary_label(spec):
    spec["target"]["label"]["column"] = "departure_delay_minutes"


def _a_year_without_data(spec):
    spec["calendar"].update(start="2015-01-01", end="2016-01-01")
    spec["sample_days"] = {"seen": "2015-06-15", "unseen": "2015-01-15"}  # moved with it
    spec["splits"] = {
        "train_start": "2015-03-01",
        "validation_start": "2015-10-01",
        "holdout_start": "2015-11-01",
    }


def _mistyped_and_missing_columns(spec):
    weather = _table(spec, "weather_hourly")
    weather["source"]["columns"]["visibility_mi"] = "int"
    _table(spec, "plane_profile")["source"]["model"] = "staging/stg_plane"


def _a_filter_on_a_missing_column(spec):
    spec["target"]["where"] = [{"column": "cancelled", "equals": False}]


def _a_text_label_compared_as_a_number(spec):
    spec["target"]["label"] = {"column": "carrier_code", "between": [0, 15], "name": "late"}


def _filters_of_the_wrong_type(spec):
    spec["target"]["where"] = [
        {"column": "is_cancelled", "equals": "no"},
        {"column": "carrier_code", "above": 3},
    ]


def _a_filter_no_row_passes(spec):
    spec["target"]["where"] = [{"column": "departure_delay_minutes", "above": 100000}]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_no_label, ["target.label.column: 'marts/flight_schedule' has no column 'is_late'"]),
        (_delay_minutes_as_a_binary_label, ["target.label: a binary label must be 0 or 1"]),
        (
            _a_filter_on_a_missing_column,
            ["target.where: 'marts/flight_schedule' has no column 'cancelled'"],
        ),
        (
            _a_text_label_compared_as_a_number,
            ["target.label: 'between' compares numbers, but 'carrier_code' is String"],
        ),
        (
            _filters_of_the_wrong_type,
            [
                "target.where.is_cancelled: 'equals' gives 'no', but 'is_cancelled' is Boolean",
                "target.where.carrier_code: 'above' compares numbers, but 'carrier_code' is String",
            ],
        ),
        (
            _a_filter_no_row_passes,
            ["target.where: no row of 'marts/flight_schedule' passes the filters"],
        ),
        (
            _a_year_without_data,
            [
                "splits.train_start: no labelled row of 'marts/flight_schedule' in train",
                "splits.validation_start: no labelled row",
                "splits.holdout_start: no labelled row",
            ],
        ),
        (
            _mistyped_and_missing_columns,
            [
                "tables.weather_hourly.source.columns.visibility_mi: declared int, but "
                "'visibility_mi' of 'staging/stg_weather' is Float64",
                "tables.plane_profile.source.model: no model 'staging/stg_plane' in the warehouse",
            ],
        ),
    ],
)
def test_a_wrong_file_is_refused_naming_file_and_field_one_mistake_a_line(
    built_home, tmp_path, change, expected
):
    path = _variant(tmp_path, change)
    out = _check(built_home.home, path)
    assert out.exit_code == 1, out.output
    assert f"{len(expected)} mistake(s) against the warehouse's data" in out.output
    lines = out.output.splitlines()
    for mistake in expected:
        assert any(line.startswith(f"{path}: {mistake}") for line in lines), (mistake, lines)


def test_the_first_asset_of_a_wrong_file_fails_in_seconds_with_the_same_problems(
    built_home, tmp_path
):
    """A file that was never checked: its first feature table refuses to start, naming the
    file and each field, before any table is computed."""
    use_case = load_use_case(_variant(tmp_path, _a_year_without_data))
    scope = ModelScope("demo", "flight_delay")
    defs = use_case_definitions(use_case, scope)
    [first] = [a for a in defs.assets if a.key.path[-1] == "weather_hourly"]
    home = tmp_path / "home"
    shutil.copytree(built_home.home, home, symlinks=True)
    table = home / "tenants/demo/flight_delay/features/weather_hourly.parquet"
    before = table.read_bytes()
    started = time.monotonic()
    result = dg.materialize(
        [first],
        resources=build_resources(Environment.LOCAL, home=home),
        raise_on_error=False,
    )
    assert not result.success and time.monotonic() - started < 60
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = str(failure.event_specific_data.error)
    assert "UseCaseDataError" in message
    assert "flight_delay.yaml: splits.train_start: no labelled row" in message
    assert "flight_delay.yaml: splits.holdout_start: no labelled row" in message
    assert table.read_bytes() == before  # the previous table is kept
