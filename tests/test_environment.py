"""One module decides the environment; the tenant names everything downstream."""

import dagster as dg
import pytest

from facilflow_assets.environment import Environment, get_environment
from facilflow_assets.resource_map import build_resources
from resources import TenantResource


def test_environment_is_local_unless_set(monkeypatch):
    monkeypatch.delenv("FACILFLOW_ENV", raising=False)
    assert get_environment() is Environment.LOCAL
    monkeypatch.setenv("FACILFLOW_ENV", "PROD")
    assert get_environment() is Environment.PROD


def test_unknown_environment_names_the_variable_and_the_choices(monkeypatch):
    monkeypatch.setenv("FACILFLOW_ENV", "staging")
    with pytest.raises(ValueError, match=r"FACILFLOW_ENV='staging'.*local, prod"):
        get_environment()


def test_tenant_namespaces_every_downstream_name():
    tenant = TenantResource(tenant="acme", use_case="flight_delay")
    assert tenant.experiment_name == "/acme/flight_delay"
    assert tenant.registered_model_name == "acme.flight_delay"
    assert tenant.feast_project == "acme_flight_delay"
    assert tenant.event_fields() == {"tenant": "acme", "use_case": "flight_delay"}


@pytest.mark.parametrize("field,value", [("tenant", "Acme"), ("use_case", "flight-delay")])
def test_tenant_rejects_names_that_cannot_be_namespaces(field, value):
    names = {"tenant": "acme", "use_case": "flight_delay", field: value}
    with pytest.raises(Exception, match=field):
        TenantResource(**names)


def test_local_resources_live_under_the_given_home(tmp_path):
    resources = build_resources(Environment.LOCAL, home=tmp_path)
    assert resources["storage"].root == tmp_path.resolve()
    assert resources["storage"].warehouse_path == tmp_path.resolve() / "warehouse.duckdb"


def test_prod_resources_read_settings_only_from_environment_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("FACILFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("FACILFLOW_TENANT", "acme")
    monkeypatch.setenv("FACILFLOW_USE_CASE", "flight_delay")
    resources = build_resources(Environment.PROD)

    @dg.asset
    def probe(storage: dg.ResourceParam, tenant: dg.ResourceParam):
        return f"{storage.root}|{tenant.registered_model_name}"

    result = dg.materialize([probe], resources=resources)
    assert result.output_for_node("probe") == f"{tmp_path.resolve()}|acme.flight_delay"


def test_prod_tenant_from_the_environment_is_validated_when_resolved(monkeypatch, tmp_path):
    monkeypatch.setenv("FACILFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("FACILFLOW_TENANT", "Not A Slug")
    monkeypatch.setenv("FACILFLOW_USE_CASE", "flight_delay")

    @dg.asset
    def probe(tenant: dg.ResourceParam):
        return tenant.registered_model_name

    with pytest.raises(dg.DagsterResourceFunctionError) as error:
        dg.materialize([probe], resources=build_resources(Environment.PROD))
    assert "tenant='Not A Slug' must start with a lowercase" in str(error.value.__cause__)
