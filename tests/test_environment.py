"""One module decides the environment; a model's scope names everything downstream."""

import subprocess
import sys

import dagster as dg
import pytest

from facilflow_assets.environment import Environment, get_environment
from facilflow_assets.events.envelope import EventType
from facilflow_assets.resource_map import build_resources
from facilflow_assets.scope import ModelScope, ScopeError
from resources.feast import POLARS_OFFLINE_STORE
from resources.serving import inherited_environment

RESOURCE_KEYS = {
    "storage",
    "feast",
    "mlflow",
    "ray_cluster",
    "governance",
    "retraining",
    "serving",
    "events",
    "dbt",
}


def test_environment_is_local_unless_set(monkeypatch):
    monkeypatch.delenv("FACILFLOW_ENV", raising=False)
    assert get_environment() is Environment.LOCAL
    monkeypatch.setenv("FACILFLOW_ENV", "PROD")
    assert get_environment() is Environment.PROD


def test_unknown_environment_names_the_variable_and_the_choices(monkeypatch):
    monkeypatch.setenv("FACILFLOW_ENV", "staging")
    with pytest.raises(ValueError, match=r"FACILFLOW_ENV='staging'.*local, prod"):
        get_environment()


def test_the_scope_namespaces_every_downstream_name():
    scope = ModelScope(tenant="acme", use_case="flight_delay")
    assert scope.experiment_name == "/acme/flight_delay"
    assert scope.audit_experiment_name == "/acme/flight_delay/audit"
    assert scope.registered_model_name == "acme.flight_delay"
    assert scope.feast_project == "acme_flight_delay"
    assert scope.event_fields() == {"tenant": "acme", "use_case": "flight_delay"}
    assert scope.key("training", "trained_model") == dg.AssetKey(
        ["acme", "flight_delay", "training", "trained_model"]
    )
    assert scope.definition_name("promotion_job") == "flight_delay_promotion_job"
    assert scope.run_tags == {"facilflow/tenant": "acme", "facilflow/use_case": "flight_delay"}
    event = scope.event(
        EventType.MODEL_GOVERNANCE_VIOLATION,
        {"check": "approval_sensor", "problem": "x"},
        version="3",
    )
    assert (event.tenant, event.use_case, event.model, event.version) == (
        "acme",
        "flight_delay",
        "acme.flight_delay",
        "3",
    )


@pytest.mark.parametrize(
    "field,value",
    [("tenant", "Acme"), ("use_case", "flight-delay"), ("tenant", ""), ("use_case", "x" * 64)],
)
def test_the_scope_rejects_names_that_cannot_be_namespaces(field, value):
    names = {"tenant": "acme", "use_case": "flight_delay", field: value}
    with pytest.raises(ScopeError, match=f"{field}={value!r} must start with a lowercase"):
        ModelScope(**names)


def test_local_resources_live_under_the_given_home(tmp_path):
    resources = build_resources(Environment.LOCAL, home=tmp_path)
    assert set(resources) == RESOURCE_KEYS  # no tenant: assets name their scope themselves
    assert resources["storage"].root == tmp_path.resolve()
    assert resources["storage"].warehouse_path == tmp_path.resolve() / "warehouse.duckdb"
    files = resources["storage"].files(ModelScope("acme", "flight_delay"))
    assert files.root == tmp_path.resolve() / "tenants" / "acme" / "flight_delay"
    assert files.models_dir == files.root / "models"
    feast = resources["feast"]
    assert feast.registry_path(ModelScope("acme", "flight_delay")) == (
        tmp_path.resolve() / "feast" / "acme_flight_delay.registry.db"
    )


def test_a_command_builds_only_the_resources_it_names_and_imports_no_other(tmp_path):
    """`facilflow models list` needs MLflow alone: Feast, Ray and dbt stay unimported."""
    code = (
        "import sys; from facilflow_assets.resource_map import build_resources; "
        "from facilflow_assets.environment import Environment; "
        f"built = build_resources(Environment.LOCAL, home={str(tmp_path)!r}, keys=['mlflow']); "
        "print(sorted(built), sorted(m for m in ('feast', 'ray', 'dagster_dbt', 'mlflow') "
        "if m in sys.modules))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert shown.strip() == "['mlflow'] ['mlflow']"
    with pytest.raises(KeyError, match="no resource mlfow; there are storage, feast, mlflow"):
        build_resources(Environment.LOCAL, home=tmp_path, keys=["mlfow"])


def test_local_approvers_are_the_default_tenant_s_unless_given(tmp_path):
    default = build_resources(Environment.LOCAL, home=tmp_path)["governance"]
    assert default.approvers_of("demo.flight_delay") == ["carol", "dave"]  # tenants.yaml
    given = build_resources(Environment.LOCAL, home=tmp_path, approvers=["erin"])["governance"]
    assert given.approvers_of("acme.flight_delay") == ["erin"]


def test_prod_resources_read_settings_only_from_environment_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("FACILFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("FACILFLOW_REDIS_URL", "redis.internal:6379")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    monkeypatch.setenv("FACILFLOW_ARTIFACT_ROOT", "s3://models/")
    monkeypatch.setenv("FACILFLOW_APPROVERS", "acme=carol,dave;globex=erin")
    monkeypatch.setenv("FACILFLOW_RAY_ADDRESS", "ray://ray-head.internal:10001")
    # The code location reads no tenant from the environment: the CLI's defaults only.
    monkeypatch.setenv("FACILFLOW_TENANT", "globex")
    monkeypatch.setenv("FACILFLOW_USE_CASE", "airport_rain")
    resources = build_resources(Environment.PROD)
    assert set(resources) == RESOURCE_KEYS
    scope = ModelScope("acme", "flight_delay")

    @dg.asset
    def probe(
        storage: dg.ResourceParam,
        feast: dg.ResourceParam,
        mlflow: dg.ResourceParam,
        governance: dg.ResourceParam,
    ):
        return {
            "files": storage.files(scope).root,
            "online": feast.repo_settings(scope)["online_store"],
            "offline": feast.repo_settings(scope)["offline_store"],
            "project": feast.repo_settings(scope)["project"],
            "artifacts": mlflow.experiment_artifact_location(scope),
            "tracking": mlflow.tracking_uri,
            "acme": governance.approvers_of("acme.flight_delay"),
            "globex": governance.approvers_of("globex.flight_delay"),
            "other": governance.approvers_of("initech.flight_delay"),
        }

    result = dg.materialize([probe], resources=resources)
    assert result.output_for_node("probe") == {
        "files": tmp_path.resolve() / "tenants" / "acme" / "flight_delay",
        "online": {"type": "redis", "connection_string": "redis.internal:6379"},
        # Training sets are joined on the Ray cluster.
        "offline": {"type": POLARS_OFFLINE_STORE, "ray_address": "ray://ray-head.internal:10001"},
        "project": "acme_flight_delay",
        "artifacts": "s3://models/acme/flight_delay",
        "tracking": "http://mlflow.internal:5000",
        "acme": ["carol", "dave"],
        "globex": ["erin"],
        "other": [],
    }


def test_a_prod_setting_missing_from_the_environment_fails_naming_it(monkeypatch, tmp_path):
    monkeypatch.setenv("FACILFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("FACILFLOW_APPROVERS", raising=False)

    @dg.asset
    def probe(storage: dg.ResourceParam, governance: dg.ResourceParam):
        return governance.approvers_of("acme.flight_delay")

    with pytest.raises(dg.DagsterInvalidConfigError) as error:
        dg.materialize([probe], resources=build_resources(Environment.PROD))
    [problem] = error.value.errors
    assert "resources:governance:config:approvers" in problem.message
    assert 'environment variable "FACILFLOW_APPROVERS" which is not set' in problem.message


def test_the_local_head_takes_settings_and_credentials_but_no_process_state():
    kept = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "FACILFLOW_ENV": "local",
        "MLFLOW_TRACKING_USERNAME": "facilflow",
        "AWS_ACCESS_KEY_ID": "key",
    }
    process_state = {
        "PROMETHEUS_MULTIPROC_DIR": "/tmp/feast_metrics_gone",  # removed with its process
        "PROMETHEUS_MULTIPROCESS_DIR": "/tmp/feast_metrics_gone",
        "RAY_ADDRESS": "127.0.0.1:6379",
        "PYTHONWARNINGS": "error",
        "DAGSTER_HOME": "/tmp/dagster",
    }
    assert inherited_environment({**kept, **process_state}) == kept
