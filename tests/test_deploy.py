"""deploy/: every manifest parses into the Kubernetes client's models, names only FacilFlow's
image and settings FacilFlow reads, and what dagster-k8s submits for a run of each job is
rendered from the Helm values and checked. No cluster runs here: the Kubernetes API that
would receive the Jobs is the one stand-in, a recorder of what the run launcher sends."""

import configparser
import importlib
import json
import re
import tomllib
from pathlib import Path

import dagster as dg
import kubernetes
import pytest
import yaml
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.launcher import LaunchRunContext
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.test_utils import create_run_for_test
from dagster_k8s import K8sRunLauncher

import jobs
from facilflow_assets.environment import (
    PROJECT_ROOT,
    server_governance_settings,
    steps_in_own_pods,
)

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
        "feature_repo/feature_store.prod.yaml": r"\$\{(\w+)\}",
        "dbt/profiles.yml": r"env_var\('(\w+)'",
    }
    return {
        name
        for path, pattern in sources.items()
        for name in re.findall(pattern, (PROJECT_ROOT / path).read_text())
    }


def test_the_config_map_and_secret_set_what_prod_reads_and_nothing_it_does_not():
    [config] = [c for c in _objects("ConfigMap") if c["metadata"]["name"] == "facilflow-config"]
    [secret] = [s for s in _objects("Secret") if s["metadata"]["name"] == "facilflow-secrets"]
    provided = set(config["data"]) | set(secret["stringData"])
    read = _read_by_facilflow()
    assert not {n for n in provided - read if not COMPONENT_VARIABLES.match(n)}
    resource_map = (PROJECT_ROOT / "facilflow_assets/resource_map.py").read_text()
    prod = set(re.findall(r'EnvVar\("(\w+)"\)', resource_map))
    assert prod <= provided, f"not set in deploy/: {sorted(prod - provided)}"
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in provided), "each setting is documented"
    # Credentials, and the URLs that carry them, live in the secret only.
    assert not [n for n in config["data"] if re.search("PASSWORD|SECRET|ACCESS_KEY", n)]
    assert {"FACILFLOW_REDIS_URL", "FACILFLOW_OUTBOX_URL"} <= set(secret["stringData"])


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
    assert configparser.ConfigParser().read(ini)  # as MLflow's basic auth reads it

    [config] = [c for c in _objects("ConfigMap") if c["metadata"]["name"] == "facilflow-config"]
    [secret] = [s for s in _objects("Secret") if s["metadata"]["name"] == "facilflow-secrets"]
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(ini))
    monkeypatch.setenv("FACILFLOW_APPROVERS", config["data"]["FACILFLOW_APPROVERS"])
    service_accounts, _ = server_governance_settings()  # as the governance app reads it
    # The user the code location and its runs talk to MLflow as, from the secret.
    assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= set(secret["stringData"])
    assert secret["stringData"]["MLFLOW_TRACKING_USERNAME"] in service_accounts
    values = yaml.safe_load((DEPLOY / "helm" / "dagster-values.yaml").read_text())
    [location] = values["dagster-user-deployments"]["deployments"]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    for where in (location, launcher):
        assert {"name": "facilflow-secrets"} in where["envSecrets"]


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
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "none",
        "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:1"}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
        "users": [{"name": "none", "user": {"token": "none"}}],
    }))  # fmt: skip
    return path


def test_each_job_becomes_a_kubernetes_job_in_facilflows_image_with_its_settings(kubeconfig):
    from facilflow_assets.definitions import defs

    values = yaml.safe_load((DEPLOY / "helm" / "dagster-values.yaml").read_text())
    [location] = values["dagster-user-deployments"]["deployments"]
    image = f"{location['image']['repository']}:{location['image']['tag']}"
    recorder = RecordedKubernetesApi()
    launcher = _helm_launcher(values, recorder, kubeconfig)
    repository_origin = RepositoryPythonOrigin(
        executable_path=PYTHON,
        code_pointer=ModuleCodePointer("facilflow_assets.definitions", "defs", "/opt/facilflow"),
        container_image=image,
        container_context={"k8s": {
            "env_config_maps": [m["name"] for m in location["envConfigMaps"]],
            "env_secrets": [s["name"] for s in location["envSecrets"]],
        }},
    )  # fmt: skip
    jobs = [j for j in defs.get_repository_def().get_all_jobs() if not j.name.startswith("__")]
    with dg.instance_for_test() as instance:
        launcher.register_instance(instance)
        for job in jobs:
            run = create_run_for_test(
                instance,
                job_name=job.name,
                tags=job.tags,
                job_code_origin=JobPythonOrigin(job.name, repository_origin),
            )
            launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    assert len(recorder.jobs) == len(jobs) >= 7
    submitted = {}
    for namespace, body in recorder.jobs:
        assert namespace == NAMESPACE
        manifest = kubernetes.client.ApiClient().sanitize_for_serialization(body)
        _strict("V1Job", manifest, manifest["metadata"]["name"])
        submitted[manifest["metadata"]["labels"]["dagster/job"]] = manifest
    assert set(submitted) == {job.name for job in jobs}
    for name, manifest in submitted.items():
        pod = manifest["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert container["image"] == image == IMAGE, name
        assert container["args"][:5] == [PYTHON, "-m", "dagster", "api", "execute_run"], name
        sources = {(k, v["name"]) for f in container["envFrom"] for k, v in f.items()}
        assert {("configMapRef", "facilflow-config"), ("secretRef", "facilflow-secrets")} <= sources
        assert pod["serviceAccountName"] == "facilflow"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert {"requests", "limits"} <= set(container["resources"]), name
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/data/facilflow" in mounts, name
    training = submitted["training_job"]["spec"]["template"]["spec"]["containers"][0]
    assert training["resources"]["limits"]["memory"] == "16Gi"  # its own dagster-k8s/config


def _executors() -> dict[str, str]:
    """The jobs' executors as `jobs` builds them in this process's environment now."""
    return {
        job.name: job.executor_def.name if job.executor_def else "default"
        for job in importlib.reload(jobs).all_jobs
    }


def test_on_kubernetes_the_jobs_that_fan_out_run_a_pod_per_step(monkeypatch):
    monkeypatch.setenv("FACILFLOW_STEP_EXECUTOR", "k8s")
    try:
        on_kubernetes = _executors()
    finally:
        monkeypatch.delenv("FACILFLOW_STEP_EXECUTOR")
        locally = _executors()  # and the module is as the rest of the suite knows it
    # Each step in a pod of its own, of the job's size.
    fan_out = {name: executor for name, executor in on_kubernetes.items() if "k8s" in executor}
    assert fan_out == {
        "warehouse_job": "k8s_2cpu_8Gi",
        "training_job": "k8s_2cpu_16Gi",
        "monitoring_job": "k8s_1cpu_4Gi",
    }
    assert not any("k8s" in executor for executor in locally.values())
    assert set(locally) == set(on_kubernetes)
    monkeypatch.setenv("FACILFLOW_STEP_EXECUTOR", "celery")
    with pytest.raises(ValueError, match="FACILFLOW_STEP_EXECUTOR='celery': use 'k8s' or"):
        steps_in_own_pods()
