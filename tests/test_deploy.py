"""deploy/: every manifest parses into the Kubernetes client's models, names only FacilFlow's
image and settings FacilFlow reads, each code location (the shared warehouse, each tenant)
is a user deployment with its own settings, what dagster-k8s submits for a run of each job
of each location is rendered from the Helm values and checked, and the run queues (Helm's
and the local instance's) share their slots out per tenant. No cluster runs here: the
Kubernetes API that would receive the Jobs is the one stand-in, a recorder of what the run
launcher sends."""

import configparser
import json
import re
import tomllib
from pathlib import Path
from typing import NamedTuple

import dagster as dg
import kubernetes
import pytest
import yaml
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.launcher import LaunchRunContext
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.test_utils import create_run_for_test
from dagster._utils.tags import TagConcurrencyLimitsCounter
from dagster_k8s import K8sRunLauncher

from facilflow_assets import locations as code_locations
from facilflow_assets.approvers import approvers_of
from facilflow_assets.environment import (
    PROJECT_ROOT,
    server_governance_settings,
    steps_in_own_pods,
)
from facilflow_assets.scope import TENANT_TAG, ModelScope
from facilflow_assets.tenants import SHARED_LOCATION, load_tenants
from jobs import TRAINING_TAG, build_use_case_jobs, build_warehouse_job

DEPLOY = PROJECT_ROOT / "deploy"
VERSION = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"registry.internal/facilflow:{VERSION}"
NAMESPACE = "facilflow"
PYTHON = "/usr/local/bin/python"  # the image's interpreter (python:3.11-slim)
# Variables read by the components themselves rather than by FacilFlow's code.
COMPONENT_VARIABLES = re.compile(r"^(MLFLOW_|AWS_|RAY_|DAGSTER_)")


def _documents() -> list[tuple[Path, dict]]:
    return [
        (path, document)
        for path in sorted(DEPLOY.rglob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document is not None
    ]


def _objects(kind: str) -> list[dict]:
    return [d for _, d in _documents() if d.get("kind") == kind]


def _named(kind: str, name: str) -> dict:
    [found] = [d for d in _objects(kind) if d["metadata"]["name"] == name]
    return found


def _values() -> dict:
    return yaml.safe_load((DEPLOY / "helm" / "dagster-values.yaml").read_text())


def _locations(values: dict) -> dict[str, dict]:
    """The Helm values' user deployments by the location each serves."""
    found = {}
    for deployment in values["dagster-user-deployments"]["deployments"]:
        arguments = deployment["dagsterApiGrpcArgs"]
        assert arguments[:2] == ["--module-name", "facilflow_assets.locations"], arguments
        assert arguments[2] == "--attribute", arguments
        found[arguments[3]] = deployment
    return found


def _prod_tenants() -> set[str]:
    """The tenants production serves: those the config map names approvers for."""
    setting = _named("ConfigMap", "facilflow-config")["data"]["FACILFLOW_APPROVERS"]
    return {entry.partition("=")[0].strip() for entry in setting.split(";") if "=" in entry}


def _strict(type_name: str, data, where: str) -> None:
    """`data` has only fields of the Kubernetes model `type_name`, recursively."""
    if type_name.startswith("list["):
        for index, item in enumerate(data):
            _strict(type_name[5:-1], item, f"{where}[{index}]")
        return
    if type_name.startswith("dict("):
        value_type = type_name[type_name.index(",") + 1 : -1].strip()
        for key, item in data.items():
            _strict(value_type, item, f"{where}.{key}")
        return
    model = getattr(kubernetes.client.models, type_name, None)
    if model is None:  # a primitive: str, int, bool, object
        return
    fields = {camel: name for name, camel in model.attribute_map.items()}
    unknown = set(data) - set(fields)
    assert not unknown, f"{where}: {type_name} has no field(s) {sorted(unknown)}"
    for key, value in data.items():
        _strict(model.openapi_types[fields[key]], value, f"{where}.{key}")


def _model(document: dict, type_name: str, where: str):
    _strict(type_name, document, where)

    class Response:
        data = json.dumps(document)

    return kubernetes.client.ApiClient().deserialize(Response(), type_name)


KINDS = {
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Secret"): "V1Secret",
    ("v1", "Service"): "V1Service",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "PersistentVolumeClaim"): "V1PersistentVolumeClaim",
    ("apps/v1", "Deployment"): "V1Deployment",
}


def test_every_manifest_is_a_valid_kubernetes_object_in_the_namespace():
    documents = [d for p, d in _documents() if p.parent.name == "k8s"]
    assert len(documents) >= 9
    for document in documents:
        assert document["metadata"]["namespace"] == NAMESPACE
        if document["kind"] == "RayCluster":  # KubeRay's resource: its pod templates
            assert document["apiVersion"] == "ray.io/v1"
            spec = document["spec"]
            groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
            for group in groups:
                _model(group["template"], "V1PodTemplateSpec", "RayCluster pod template")
            continue
        where = f"{document['kind']} {document['metadata']['name']}"
        _model(document, KINDS[(document["apiVersion"], document["kind"])], where)


def _images(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["image"]] if isinstance(node.get("image"), str) else []
        if {"repository", "tag"} <= set(node):
            found.append(f"{node['repository']}:{node['tag']}")
        return found + [i for value in node.values() for i in _images(value)]
    if isinstance(node, list):
        return [i for item in node for i in _images(item)]
    return []


def test_every_image_is_facilflows_own_built_by_the_dockerfile_in_the_repo():
    images = [image for _, document in _documents() for image in _images(document)]
    assert len(images) >= 4 and set(images) == {IMAGE}
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for source in re.findall(r"^COPY ([^\n]+) \S+$", dockerfile, re.MULTILINE):
        for name in source.split():
            assert (PROJECT_ROOT / name).exists(), f"the Dockerfile copies {name}"
    module = re.search(r'"--module-name", "([\w.]+)"', dockerfile).group(1)
    assert (PROJECT_ROOT / Path(*module.split("."))).with_suffix(".py").exists()
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    uv_version = re.search(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE).group(1)
    assert f'"uv=={uv_version}"' in dockerfile  # the lock is synced by the same uv


def _read_by_facilflow() -> set[str]:
    sources = {
        "facilflow_assets/resource_map.py": r'EnvVar\("(\w+)"\)',
        "facilflow_assets/environment.py": r'"([A-Z][A-Z0-9]*_[A-Z0-9_]+)"',
        "dbt/profiles.yml": r"env_var\('(\w+)'",
    }
    return {
        name
        for path, pattern in sources.items()
        for name in re.findall(pattern, (PROJECT_ROOT / path).read_text())
    }


def test_the_config_map_and_secrets_set_what_prod_reads_and_nothing_it_does_not():
    config = _named("ConfigMap", "facilflow-config")
    secret = _named("Secret", "facilflow-secrets")
    tenant_secrets = [_named("Secret", f"facilflow-{t}-secrets") for t in _prod_tenants()]
    provided = set(config["data"]) | {n for s in [secret, *tenant_secrets] for n in s["stringData"]}
    read = _read_by_facilflow()
    assert not {n for n in provided - read if not COMPONENT_VARIABLES.match(n)}
    # The code location no longer reads a tenant or a use case from its environment.
    assert not {"FACILFLOW_TENANT", "FACILFLOW_USE_CASE", "FACILFLOW_FEAST_PROJECT"} & provided
    resource_map = (PROJECT_ROOT / "facilflow_assets/resource_map.py").read_text()
    prod = set(re.findall(r'EnvVar\("(\w+)"\)', resource_map))
    assert prod <= provided, f"not set in deploy/: {sorted(prod - provided)}"
    docs = "".join(
        p.read_text() for p in [PROJECT_ROOT / "README.md", *(PROJECT_ROOT / "docs").glob("*.md")]
    )
    assert all(f"`{name}`" in docs for name in provided), "each setting is documented"
    # Credentials, and the URLs that carry them, live in the secrets only.
    assert not [n for n in config["data"] if re.search("PASSWORD|SECRET|ACCESS_KEY", n)]
    assert {"FACILFLOW_REDIS_URL", "FACILFLOW_OUTBOX_URL"} <= set(secret["stringData"])
    # One config map for every tenant: the approvers per tenant, each tenant with some.
    setting = config["data"]["FACILFLOW_APPROVERS"]
    tenants = load_tenants()
    assert _prod_tenants() and _prod_tenants() <= set(tenants)
    for tenant in _prod_tenants():
        for use_case in tenants[tenant].use_cases:
            assert approvers_of(setting, ModelScope(tenant, use_case).registered_model_name)
    assert approvers_of(setting, "no_such_tenant.flight_delay") == []


def test_the_mlflow_server_takes_the_user_dagster_runs_as_for_its_service_account(
    tmp_path, monkeypatch
):
    [server] = [d for d in _objects("Deployment") if d["metadata"]["name"] == "mlflow"]
    [container] = server["spec"]["template"]["spec"]["containers"]
    assert "--app-name=facilflow-governance" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_BASIC_AUTH_FAIL_CLOSED"]["value"] == "true"
    [auth] = [c for c in _objects("ConfigMap") if c["metadata"]["name"] == "mlflow-auth"]
    [volume] = server["spec"]["template"]["spec"]["volumes"]
    [mount] = container["volumeMounts"]
    path = Path(env["MLFLOW_AUTH_CONFIG_PATH"]["value"])
    assert (volume["configMap"]["name"], mount["mountPath"]) == ("mlflow-auth", str(path.parent))
    ini = tmp_path / path.name
    ini.write_text(auth["data"][path.name])
    settings = configparser.ConfigParser()  # as MLflow's basic auth reads it
    assert settings.read(ini)
    assert settings["mlflow"].getint("auth_cache_ttl_seconds") > 0  # a password check per minute

    config = _named("ConfigMap", "facilflow-config")
    secret = _named("Secret", "facilflow-secrets")
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(ini))
    monkeypatch.setenv("FACILFLOW_APPROVERS", config["data"]["FACILFLOW_APPROVERS"])
    service_accounts, approvers = server_governance_settings()  # as the governance app reads it
    assert approvers == config["data"]["FACILFLOW_APPROVERS"]
    # No MLflow identity is shared: each tenant's location and runs act as its own account.
    assert not {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} & set(secret["stringData"])
    values = _values()
    locations = _locations(values)
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    accounts = {}
    for tenant in _prod_tenants():
        own = _named("Secret", f"facilflow-{tenant}-secrets")["stringData"]
        assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= set(own), tenant
        assert own["MLFLOW_TRACKING_USERNAME"] in service_accounts, tenant
        accounts[tenant] = own["MLFLOW_TRACKING_USERNAME"]
        assert {"name": f"facilflow-{tenant}-secrets"} in locations[tenant]["envSecrets"]
        assert locations[tenant]["includeConfigInLaunchedRuns"]["enabled"] is True
    assert len(set(accounts.values())) == len(accounts)
    for where in (*locations.values(), launcher):
        assert {"name": "facilflow-secrets"} in where["envSecrets"]
    # A tenant's secret goes to its own location (and its runs) only.
    for attribute, location in locations.items():
        others = {f"facilflow-{t}-secrets" for t in accounts if t != attribute}
        assert not others & {s["name"] for s in location["envSecrets"]}, attribute
    assert [s["name"] for s in launcher["envSecrets"]] == ["facilflow-secrets"]


def test_each_location_is_a_user_deployment_of_its_own():
    locations = _locations(_values())
    tenants = load_tenants()
    assert SHARED_LOCATION in locations
    # Every deployment serves a location facilflow_assets.locations has: the shared
    # warehouse or a tenant of tenants.yaml, under the tenant's name.
    assert set(locations) - {SHARED_LOCATION} <= set(tenants)
    for attribute, deployment in locations.items():
        assert deployment["name"] == f"facilflow-{attribute}"
        assert isinstance(getattr(code_locations, attribute), dg.Definitions)
    # Every tenant production serves (named in FACILFLOW_APPROVERS) has its location.
    assert _prod_tenants() == set(locations) - {SHARED_LOCATION}
    names = [d["name"] for d in _values()["dagster-user-deployments"]["deployments"]]
    assert len(names) == len(set(names))
    ports = {d["port"] for d in locations.values()}
    assert ports == {3030}  # each in a pod of its own, each on the image's port
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert '"--port", "3030"' in dockerfile


class RecordedKubernetesApi:
    """Stands in for the Kubernetes batch API (no cluster here): keeps the Jobs it gets."""

    def __init__(self):
        self.jobs: list[tuple[str, kubernetes.client.V1Job]] = []

    def create_namespaced_job(self, body, namespace, **_):
        self.jobs.append((namespace, body))
        return body


def _helm_launcher(values: dict, recorder, kubeconfig: Path) -> K8sRunLauncher:
    """The run launcher the chart configures from `values` (as its config map template
    maps them), talking to `recorder`."""
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    return K8sRunLauncher(
        service_account_name=values["global"]["serviceAccountName"],
        instance_config_map="dagster-instance",
        postgres_password_secret=values["global"]["postgresqlSecretName"],
        dagster_home="/opt/dagster/dagster_home",
        image_pull_policy=launcher["imagePullPolicy"],
        load_incluster_config=False,
        kubeconfig_file=str(kubeconfig),
        job_namespace=NAMESPACE,
        env_config_maps=[m["name"] for m in launcher["envConfigMaps"]],
        env_secrets=[s["name"] for s in launcher["envSecrets"]],
        volumes=launcher["volumes"],
        volume_mounts=launcher["volumeMounts"],
        # The chart's template renames runK8sConfig's keys (containerConfig: container_config).
        run_k8s_config={
            re.sub(r"([A-Z])", r"_\1", key).lower(): value
            for key, value in launcher["runK8sConfig"].items()
        },
        fail_pod_on_run_failure=launcher["failPodOnRunFailure"],
        k8s_client_batch_api=recorder,
    )


@pytest.fixture
def kubeconfig(tmp_path) -> Path:
    """A kubeconfig naming an unreachable API server: the launcher loads it, never calls it."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "none",
                "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:1"}}],
                "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
                "users": [{"name": "none", "user": {"token": "none"}}],
            }
        )
    )
    return path


def test_each_job_becomes_a_kubernetes_job_in_facilflows_image_with_its_settings(kubeconfig):
    values = _values()
    recorder = RecordedKubernetesApi()
    launcher = _helm_launcher(values, recorder, kubeconfig)
    launched = []  # (location, job)
    with dg.instance_for_test() as instance:
        launcher.register_instance(instance)
        for attribute, location in _locations(values).items():
            image = f"{location['image']['repository']}:{location['image']['tag']}"
            repository_origin = RepositoryPythonOrigin(
                executable_path=PYTHON,
                code_pointer=ModuleCodePointer(
                    "facilflow_assets.locations", attribute, "/opt/facilflow"
                ),
                container_image=image,
                container_context={
                    "k8s": {
                        "env_config_maps": [m["name"] for m in location["envConfigMaps"]],
                        "env_secrets": [s["name"] for s in location["envSecrets"]],
                    }
                },
            )
            repository = getattr(code_locations, attribute).get_repository_def()
            for job in repository.get_all_jobs():
                if job.name.startswith("__"):
                    continue
                run = create_run_for_test(
                    instance,
                    job_name=job.name,
                    tags=job.tags,
                    job_code_origin=JobPythonOrigin(job.name, repository_origin),
                )
                launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
                launched.append((attribute, job))
    assert len(recorder.jobs) == len(launched) >= 8
    submitted = {}
    for (attribute, job), (namespace, body) in zip(launched, recorder.jobs, strict=True):
        assert namespace == NAMESPACE
        manifest = kubernetes.client.ApiClient().sanitize_for_serialization(body)
        _strict("V1Job", manifest, manifest["metadata"]["name"])
        assert manifest["metadata"]["labels"]["dagster/job"] == job.name
        submitted[(attribute, job.name)] = manifest
    assert len(submitted) == len(launched)
    for (attribute, name), manifest in submitted.items():
        pod = manifest["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert container["image"] == IMAGE, name
        assert container["args"][:5] == [PYTHON, "-m", "dagster", "api", "execute_run"], name
        sources = {(k, v["name"]) for f in container["envFrom"] for k, v in f.items()}
        assert {("configMapRef", "facilflow-config"), ("secretRef", "facilflow-secrets")} <= sources
        tenant_secrets = {n for _, n in sources if re.fullmatch(r"facilflow-\w+-secrets", n)}
        if attribute == SHARED_LOCATION:
            assert not tenant_secrets, name
        else:  # the tenant's runs act as its own MLflow account
            assert tenant_secrets == {f"facilflow-{attribute}-secrets"}, name
        assert pod["serviceAccountName"] == "facilflow"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert {"requests", "limits"} <= set(container["resources"]), name
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/data/facilflow" in mounts, name
    assert ("shared", "warehouse_job") in submitted
    for attribute, job in launched:
        if attribute != SHARED_LOCATION:  # the run queue counts each tenant's runs
            assert job.tags[TENANT_TAG] == attribute, job.name
    for tenant in set(_locations(values)) - {SHARED_LOCATION}:
        training = submitted[(tenant, "flight_delay_training_job")]
        container = training["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"]["limits"]["memory"] == "16Gi"  # its dagster-k8s/config


def _executors() -> dict[str, str]:
    """The jobs' executors as the factories build them in this process's environment now."""
    built = [build_warehouse_job(), *build_use_case_jobs(ModelScope("demo", "flight_delay"))]
    return {job.name: job.executor_def.name if job.executor_def else "default" for job in built}


def test_on_kubernetes_the_jobs_that_fan_out_run_a_pod_per_step(monkeypatch):
    monkeypatch.setenv("FACILFLOW_STEP_EXECUTOR", "k8s")
    on_kubernetes = _executors()
    monkeypatch.delenv("FACILFLOW_STEP_EXECUTOR")
    locally = _executors()
    # Each step in a pod of its own, of the job's size.
    fan_out = {name: executor for name, executor in on_kubernetes.items() if "k8s" in executor}
    assert fan_out == {
        "warehouse_job": "k8s_2cpu_8Gi",
        "flight_delay_features_job": "k8s_2cpu_8Gi",
        "flight_delay_training_job": "k8s_2cpu_16Gi",
        "flight_delay_monitoring_job": "k8s_1cpu_4Gi",
    }
    assert not any("k8s" in executor for executor in locally.values())
    assert set(locally) == set(on_kubernetes)
    monkeypatch.setenv("FACILFLOW_STEP_EXECUTOR", "celery")
    with pytest.raises(ValueError, match="FACILFLOW_STEP_EXECUTOR='celery': use 'k8s' or"):
        steps_in_own_pods()


class QueuedRun(NamedTuple):
    name: str
    tags: dict[str, str]


def _queued(tenant: str, use_case: str, job: str) -> QueuedRun:
    """A run of a tenant's job, with the tags its definition gives it."""
    repository = getattr(code_locations, tenant).get_repository_def()
    return QueuedRun(f"{tenant}/{use_case}_{job}", repository.get_job(f"{use_case}_{job}").tags)


def _dequeued(run_queue: dict, queue: list[QueuedRun]) -> list[str]:
    """The runs the queued run coordinator launches from `queue`, in order, with nothing in
    progress, as its daemon counts tag limits."""
    counter = TagConcurrencyLimitsCounter(run_queue["tag_concurrency_limits"], [])
    launched = []
    for run in queue:
        if len(launched) < run_queue["max_concurrent_runs"] and not counter.is_blocked(run):
            counter.update_counters_with_launched_item(run)
            launched.append(run.name)
    return launched


def _a_busy_queue() -> list[QueuedRun]:
    return [
        _queued("demo", "flight_delay", "training_job"),
        _queued("demo", "airport_rain", "training_job"),
        _queued("acme", "flight_delay", "training_job"),
        _queued("demo", "flight_delay", "monitoring_job"),
        _queued("demo", "airport_rain", "monitoring_job"),
        _queued("acme", "flight_delay", "monitoring_job"),
        _queued("acme", "flight_delay", "features_job"),
        _queued("acme", "flight_delay", "serving_health_job"),
        _queued("demo", "flight_delay", "features_job"),
        _queued("demo", "flight_delay", "serving_health_job"),
    ]


def test_the_local_instance_queues_runs_per_tenant(tmp_path):
    (tmp_path / "dagster.yaml").write_text((DEPLOY / "local-dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        config = instance.get_concurrency_config().run_queue_config
    run_queue = {
        "max_concurrent_runs": config.max_concurrent_runs,
        "tag_concurrency_limits": config.tag_concurrency_limits,
    }
    limits = {(d["key"], json.dumps(d["value"])): d["limit"] for d in config.tag_concurrency_limits}
    per_value = json.dumps({"applyLimitPerUniqueValue": True})
    assert limits == {(TENANT_TAG, per_value): 2, (TRAINING_TAG, per_value): 1}
    # One training per tenant, two runs per tenant: one tenant's trainings queue behind each
    # other, not in front of another tenant's runs.
    assert _dequeued(run_queue, _a_busy_queue()) == [
        "demo/flight_delay_training_job",
        "acme/flight_delay_training_job",
        "demo/flight_delay_monitoring_job",
        "acme/flight_delay_monitoring_job",
    ]
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert "cp deploy/local-dagster.yaml $@" in makefile  # the instance `make demo` uses


def test_the_helm_run_queue_gives_each_tenant_its_slots_and_one_training(tmp_path):
    coordinator = _values()["dagsterDaemon"]["runCoordinator"]
    assert coordinator["type"] == "QueuedRunCoordinator"
    queued = coordinator["config"]["queuedRunCoordinator"]
    # As the chart renders it into the instance's dagster.yaml, which Dagster validates.
    run_queue = {
        "max_concurrent_runs": queued["maxConcurrentRuns"],
        "tag_concurrency_limits": queued["tagConcurrencyLimits"],
    }
    overrides = {
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": run_queue,
        }
    }
    with dg.instance_for_test(overrides=overrides) as instance:
        config = instance.get_concurrency_config().run_queue_config
        assert config.tag_concurrency_limits == run_queue["tag_concurrency_limits"]
    by_key = {limit["key"]: limit for limit in run_queue["tag_concurrency_limits"]}
    assert set(by_key) == {TENANT_TAG, TRAINING_TAG}
    for key, limit in ((TENANT_TAG, 4), (TRAINING_TAG, 1)):
        assert by_key[key]["value"] == {"applyLimitPerUniqueValue": True}
        assert by_key[key]["limit"] == limit
    # The training tag names the tenant: one training per tenant, not one per release.
    for tenant, spec in load_tenants().items():
        for use_case in spec.use_cases:
            repository = getattr(code_locations, tenant).get_repository_def()
            training = repository.get_job(f"{use_case}_training_job")
            assert training.tags[TRAINING_TAG] == tenant
    assert _dequeued(run_queue, _a_busy_queue()) == [
        "demo/flight_delay_training_job",
        "acme/flight_delay_training_job",
        "demo/flight_delay_monitoring_job",
        "demo/airport_rain_monitoring_job",
        "acme/flight_delay_monitoring_job",
        "acme/flight_delay_features_job",
        "acme/flight_delay_serving_health_job",
        "demo/flight_delay_features_job",
    ]  # and demo's fifth run waits, while the release has slots left
    assert run_queue["max_concurrent_runs"] > 8
