"""Spec errors stop loading with a message naming the file, table, feature and field; the
tenants file is read the same way."""

from pathlib import Path

import pytest
import yaml

from facilflow_assets.feature_spec import FeatureSpec, FeatureSpecError, load_spec_file
from facilflow_assets.tenants import TENANTS_FILE, TenantError, load_tenants, tenant_spec
from facilflow_assets.use_case import load_use_case, use_case_path

BASE_TABLE = {
    "name": "weather",
    "description": "test table",
    "source": {
        "model": "staging/stg_weather",
        "entity": ["airport_code"],
        "timestamp": "observed_hour_at",
        "columns": {
            "airport_code": "string",
            "observed_hour_at": "timestamp",
            "temperature_f": "float",
            "visibility_mi": "float",
        },
    },
}


def _write_spec(tmp_path: Path, features: list[dict], **table) -> Path:
    path = tmp_path / "spec.yaml"
    document = {"use_case": "test", "tables": [{**BASE_TABLE, **table, "features": features}]}
    path.write_text(yaml.safe_dump(document))
    return path


def test_the_flight_delay_spec_loads_with_every_feature_kind():
    spec = load_use_case(use_case_path("flight_delay"))
    kinds = {f.kind for t in spec.tables for f in t.features}
    assert kinds == {"rolling", "lag", "ratio", "time", "aggregate"}
    assert len(spec.tables) == 6


@pytest.mark.parametrize(
    "feature,expected",
    [
        (
            {
                "name": "t_mean",
                "kind": "rolling",
                "column": "temperatur_f",
                "stat": "mean",
                "window": "3h",
            },
            "table 'weather', feature 't_mean', field 'column': unknown column 'temperatur_f'",
        ),
        (
            {
                "name": "t_mean",
                "kind": "rolling",
                "column": "temperature_f",
                "stat": "mean",
                "window": 0,
            },
            "feature 't_mean', field 'window': must be positive, got 0",
        ),
        (
            {
                "name": "t_mean",
                "kind": "rolling",
                "column": "temperature_f",
                "stat": "mean",
                "window": "0h",
            },
            "feature 't_mean', field 'window': must be positive, got '0h'",
        ),
        (
            {"name": "t_lag", "kind": "lag", "column": "temperature_f", "steps": -1},
            "feature 't_lag', field 'steps': must be positive, got -1",
        ),
        (
            {
                "name": "code_ratio",
                "kind": "ratio",
                "numerator": "airport_code",
                "denominator": "visibility_mi",
            },
            "feature 'code_ratio', field 'numerator': 'airport_code' is string, not numeric",
        ),
        (
            {"name": "temperature_f", "kind": "lag", "column": "visibility_mi", "steps": 1},
            "feature 'temperature_f', field 'name': duplicate output name",
        ),
        (
            {"name": "hour", "kind": "time", "column": "temperature_f", "part": "hour"},
            "feature 'hour', field 'column': 'temperature_f' is not a timestamp",
        ),
        (
            {"name": "rain_6h", "kind": "aggregate", "agg": "sum", "window": "6h"},
            "feature 'rain_6h', field 'column': a sum needs a column",
        ),
        (
            {
                "name": "t_mean",
                "kind": "rolling",
                "column": "temperature_f",
                "stat": "mean",
                "window": "3 hours",
            },
            "feature 't_mean', field 'window': '3 hours' is not a duration like",
        ),
    ],
)
def test_a_bad_feature_names_the_file_table_feature_and_field(tmp_path, feature, expected):
    path = _write_spec(tmp_path, [feature], keep=["temperature_f"])
    with pytest.raises(FeatureSpecError) as error:
        load_spec_file(path, FeatureSpec)
    assert str(error.value).startswith(f"{path}: ")
    assert expected in str(error.value)


def test_two_features_with_one_name_are_refused(tmp_path):
    feature = {"name": "t_prev", "kind": "lag", "column": "temperature_f", "steps": 1}
    path = _write_spec(tmp_path, [feature, {**feature, "steps": 2}])
    with pytest.raises(FeatureSpecError, match="feature 't_prev', field 'name': duplicate"):
        load_spec_file(path, FeatureSpec)


def test_a_missing_field_names_the_feature(tmp_path):
    path = _write_spec(
        tmp_path, [{"name": "t_mean", "kind": "rolling", "column": "temperature_f", "window": 3}]
    )
    with pytest.raises(FeatureSpecError, match=r"table 'weather', feature 't_mean', field 'stat'"):
        load_spec_file(path, FeatureSpec)


def test_a_misspelled_field_is_refused_not_ignored(tmp_path):
    path = _write_spec(
        tmp_path, [{"name": "t_prev", "kind": "lag", "column": "temperature_f", "step": 1}]
    )
    with pytest.raises(FeatureSpecError, match=r"feature 't_prev', field 'step'"):
        load_spec_file(path, FeatureSpec)


def test_expectations_must_name_real_columns(tmp_path):
    path = _write_spec(tmp_path, [], expect={"ranges": {"temprature_f": [0, 1]}})
    with pytest.raises(FeatureSpecError, match=r"field 'expect.ranges': unknown column"):
        load_spec_file(path, FeatureSpec)


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("use_case: [unclosed")
    with pytest.raises(FeatureSpecError, match=r"broken\.yaml: not valid YAML"):
        load_spec_file(path, FeatureSpec)


def test_the_shipped_tenants_file_loads():
    tenants = load_tenants()
    assert tenants["demo"].use_cases[:2] == ["flight_delay", "airport_rain"]
    assert tenants["demo"].approvers == ["carol", "dave"]
    assert tenants["acme"].use_cases == ["flight_delay"]
    assert load_tenants(TENANTS_FILE) == tenants


ACME = {"description": "test tenant", "use_cases": ["flight_delay"], "approvers": ["erin"]}


@pytest.mark.parametrize(
    "document,expected",
    [
        ({"Acme": ACME}, "tenant='Acme' must start with a lowercase letter"),
        (
            {"acme": {**ACME, "use_cases": ["flight_delay", "flight_delay"]}},
            "field 'acme.use_cases': 'flight_delay' is listed more than once",
        ),
        ({"acme": {**ACME, "use_cases": []}}, "field 'acme.use_cases': List should have at"),
        (
            {"acme": {**ACME, "use_cases": ["Flight-Delay"]}},
            "field 'acme.use_cases': use case='Flight-Delay' must start with a lowercase",
        ),
        ({"acme": {**ACME, "approver": ["erin"]}}, "field 'acme.approver': Extra inputs"),
        ({}, "no tenant is declared"),
        ({"shared": ACME}, "'shared' is the warehouse's location, not a tenant"),
        (
            {
                "acme": {**ACME, "use_cases": ["flight_delay"]},
                "acme_flight": {**ACME, "use_cases": ["delay"]},
            },
            "tenant 'acme_flight', use case 'delay' and tenant 'acme', use case "
            "'flight_delay' would share the Feast project 'acme_flight_delay'",
        ),
    ],
)
def test_a_tenants_file_mistake_names_the_file_and_the_place(tmp_path, document, expected):
    path = tmp_path / "tenants.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(FeatureSpecError) as error:
        load_tenants(path)
    assert str(error.value).startswith(f"{path}: ")
    assert expected in str(error.value)


def test_an_unknown_tenant_is_named_with_the_tenants_the_file_declares():
    with pytest.raises(TenantError, match=r"tenants.yaml: no tenant 'globex'; it declares demo"):
        tenant_spec("globex")
