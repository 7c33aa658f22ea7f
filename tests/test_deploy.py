"""deploy/: every manifest parses into the Kubernetes client's models, names only FacilFlow's
image (and one pinned authenticating proxy) and settings FacilFlow reads, each code location
(the shared warehouse, each tenant) is a user deployment with its own settings, what
dagster-k8s submits for a run and a step of each job of each location is rendered from the
Helm values and checked, the NetworkPolicies let exactly the flows of docs/security.md
through (evaluated here on the pods as they are labelled), each pod holds only the secrets
it reads, the edges carry TLS and authentication, and the run queues (Helm's and the local
instance's) share their slots out per tenant. No cluster runs here: the Kubernetes API that
would receive the Jobs is the one stand-in, a recorder of what the run launcher sends."""

import configparser
import copy
import ipaddress
import json
import posixpath
import re
import shlex
import tomllib
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlparse

import click
import dagster as dg
import kubernetes
import pytest
import uvicorn.main
import yaml
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.launcher import LaunchRunContext
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.test_utils import create_run_for_test
from dagster._utils.tags import TagConcurrencyLimitsCounter
from dagster_k8s import K8sRunLauncher
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import construct_dagster_k8s_job
from mlflow.cli import server as mlflow_server_command
from mlflow.server.auth.config import read_auth_config
from mlflow.server.security_utils import is_allowed_host_header
from ray._private.authentication.authentication_token_setup import AUTH_MODE_ENV_VAR
from ray.exceptions import AuthenticationError

from facilflow_assets import locations as code_locations
from facilflow_assets.approvers import approvers_of
from facilflow_assets.environment import (
    PROJECT_ROOT,
    Environment,
    server_governance_settings,
    steps_in_own_pods,
)
from facilflow_assets.resource_map import build_resources
from facilflow_assets.scope import TENANT_TAG, ModelScope
from facilflow_assets.serving.endpoint import EndpointSpec
from facilflow_assets.tenants import SHARED_LOCATION, load_tenants
from jobs import TRAINING_TAG, build_use_case_jobs, build_warehouse_job
from resources.serving import HEAD_INHERITS_PREFIXES

DEPLOY = PROJECT_ROOT / "deploy"
VERSION = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"registry.internal/facilflow:{VERSION}"
# The one image not built here: the Dagster UI's authenticating proxy, pinned.
PROXY_IMAGE = re.compile(
    r"^quay\.io/oauth2-proxy/oauth2-proxy(:v\d+\.\d+\.\d+|@sha256:[0-9a-f]{64})$"
)
NAMESPACE = "facilflow"
RELEASE = "dagster"  # the Helm release of docs/deployment.md (`helm upgrade --install dagster`)
PYTHON = "/usr/local/bin/python"  # the image's interpreter (python:3.11-slim)
# Variables read by the components themselves rather than by FacilFlow's code.
COMPONENT_VARIABLES = re.compile(r"^(MLFLOW_|AWS_|RAY_|DAGSTER_)")
RUN_ROLE = {"facilflow.io/role": "dagster-run"}


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


def _per_tenant(setting: str) -> dict[str, list[str]]:
    """A per-tenant setting (`tenant=name,name;tenant=...`) as tenant -> names."""
    entries = [entry.partition("=") for entry in setting.split(";") if entry.strip()]
    assert all(equals for _, equals, _ in entries), f"not per tenant: {setting!r}"
    return {
        t.strip(): [n.strip() for n in names.split(",") if n.strip()] for t, _, names in entries
    }


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
    ("networking.k8s.io/v1", "NetworkPolicy"): "V1NetworkPolicy",
    ("networking.k8s.io/v1", "Ingress"): "V1Ingress",
}


def _check_cert_manager(document: dict) -> None:
    """cert-manager's resources (no model in the Kubernetes client): the fields relied on."""
    assert document["apiVersion"] == "cert-manager.io/v1"
    spec = document["spec"]
    if document["kind"] == "Issuer":  # a CA issuer: the operator's CA key pair
        assert set(spec) == {"ca"} and set(spec["ca"]) == {"secretName"}, spec
        return
    assert document["kind"] == "Certificate", document["kind"]
    known = {"secretName", "issuerRef", "dnsNames", "usages", "duration", "renewBefore"}
    assert set(spec) <= known | {"privateKey"}, set(spec) - known
    issuer = spec["issuerRef"]
    assert issuer["kind"] == "Issuer" and _named("Issuer", issuer["name"])
    assert spec["dnsNames"] and isinstance(spec["secretName"], str)
    assert "server auth" in spec["usages"]


def test_every_manifest_is_a_valid_kubernetes_object_in_the_namespace():
    documents = [d for p, d in _documents() if p.parent.name == "k8s"]
    assert len(documents) >= 30
    for document in documents:
        assert document["metadata"]["namespace"] == NAMESPACE
        if document["kind"] == "RayCluster":  # KubeRay's resource: its pod templates
            assert document["apiVersion"] == "ray.io/v1"
            spec = document["spec"]
            groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
            for group in groups:
                _model(group["template"], "V1PodTemplateSpec", "RayCluster pod template")
            autoscaler = spec["autoscalerOptions"]
            _strict("list[V1EnvFromSource]", autoscaler["envFrom"], "RayCluster autoscaler")
            continue
        if document["kind"] in {"Issuer", "Certificate"}:
            _check_cert_manager(document)
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
    assert images.count(IMAGE) >= 4
    # But one: the authenticating proxy in front of the Dagster UI, pinned by tag or digest.
    [proxy] = set(images) - {IMAGE}
    assert PROXY_IMAGE.match(proxy) and not proxy.endswith(":latest"), proxy
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
        "facilflow_assets/resource_map.py": r'EnvVar(?:\.int)?\("(\w+)"\)',
        "facilflow_assets/environment.py": r'"([A-Z][A-Z0-9]*_[A-Z0-9_]+)"',
        "dbt/profiles.yml": r"env_var\('(\w+)'",
    }
    return {
        name
        for path, pattern in sources.items()
        for name in re.findall(pattern, (PROJECT_ROOT / path).read_text())
    }


def _facilflow_secrets() -> dict[str, dict[str, str]]:
    """FacilFlow's secrets (facilflow-*) by name: what its pods read."""
    return {
        s["metadata"]["name"]: s["stringData"]
        for s in _objects("Secret")
        if s["metadata"]["name"].startswith("facilflow-")
    }


def test_the_config_map_and_secrets_set_what_prod_reads_and_nothing_it_does_not():
    config = _named("ConfigMap", "facilflow-config")
    secrets = _facilflow_secrets()
    assert {f"facilflow-{t}-secrets" for t in _prod_tenants()} <= set(secrets)
    provided = set(config["data"]) | {n for keys in secrets.values() for n in keys}
    read = _read_by_facilflow()
    assert not {n for n in provided - read if not COMPONENT_VARIABLES.match(n)}
    # The code location no longer reads a tenant or a use case from its environment.
    assert not {"FACILFLOW_TENANT", "FACILFLOW_USE_CASE", "FACILFLOW_FEAST_PROJECT"} & provided
    resource_map = (PROJECT_ROOT / "facilflow_assets/resource_map.py").read_text()
    prod = set(re.findall(r'EnvVar(?:\.int)?\("(\w+)"\)', resource_map))
    assert prod <= provided, f"not set in deploy/: {sorted(prod - provided)}"
    docs = "".join(
        p.read_text() for p in [PROJECT_ROOT / "README.md", *(PROJECT_ROOT / "docs").glob("*.md")]
    )
    undocumented = {name for name in provided if f"`{name}`" not in docs}
    assert not undocumented, "each setting is documented"
    # Credentials, and the URLs that carry them, live in the secrets only, one per purpose.
    assert not [n for n in config["data"] if re.search("PASSWORD|SECRET|ACCESS_KEY|TOKEN", n)]
    assert set(secrets["facilflow-outbox-secrets"]) == {"FACILFLOW_OUTBOX_URL"}
    assert set(secrets["facilflow-redis-secrets"]) == {"FACILFLOW_REDIS_URL"}
    assert set(secrets["facilflow-checkpoint-secrets"]) == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
    assert "facilflow-secrets" not in secrets  # the one secret that went everywhere is gone
    # Artifacts go through the MLflow server: no client holds the artifact bucket's keys.
    assert config["data"]["FACILFLOW_ARTIFACT_ROOT"] == "mlflow-artifacts:/"
    # One config map for every tenant: the approvers per tenant, each tenant with some.
    setting = config["data"]["FACILFLOW_APPROVERS"]
    tenants = load_tenants()
    assert _prod_tenants() and _prod_tenants() <= set(tenants)
    assert set(_per_tenant(setting)) == _prod_tenants()
    for tenant in _prod_tenants():
        for use_case in tenants[tenant].use_cases:
            assert approvers_of(setting, ModelScope(tenant, use_case).registered_model_name)
    assert approvers_of(setting, "no_such_tenant.flight_delay") == []


def _container(deployment: dict) -> dict:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _auth_ini(tmp_path: Path) -> tuple[Path, dict]:
    """The MLflow server's basic_auth.ini, written where its environment says, and that
    environment."""
    server = _named("Deployment", "mlflow")
    container = _container(server)
    env = {e["name"]: e for e in container["env"]}
    path = Path(env["MLFLOW_AUTH_CONFIG_PATH"]["value"])
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent)]
    [volume] = [
        v for v in server["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]
    ]
    auth = _named("ConfigMap", volume["configMap"]["name"])
    ini = tmp_path / path.name
    ini.write_text(auth["data"][path.name])
    return ini, env


def test_the_mlflow_server_takes_the_user_dagster_runs_as_for_its_service_account(
    tmp_path, monkeypatch
):
    server = _named("Deployment", "mlflow")
    container = _container(server)
    assert "--app-name=facilflow-governance" in container["args"]
    ini, env = _auth_ini(tmp_path)
    assert env["MLFLOW_BASIC_AUTH_FAIL_CLOSED"]["value"] == "true"
    settings = configparser.ConfigParser()  # as MLflow's basic auth reads it
    assert settings.read(ini)
    assert settings["mlflow"].getint("auth_cache_ttl_seconds") > 0  # a password check per minute

    config = _named("ConfigMap", "facilflow-config")
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(ini))
    monkeypatch.setenv("FACILFLOW_APPROVERS", config["data"]["FACILFLOW_APPROVERS"])
    governance = server_governance_settings()  # as the governance app reads it
    # Per tenant: a tenant's service account manages that tenant's objects only.
    service_accounts = _per_tenant(governance["service_accounts"])
    assert set(service_accounts) == _prod_tenants()
    assert governance["approvers"] == config["data"]["FACILFLOW_APPROVERS"]
    # No MLflow identity is shared: each tenant's location and runs act as its own account.
    secrets = _facilflow_secrets()
    identity = {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
    holders = {name for name, keys in secrets.items() if identity & set(keys)}
    tenant_holders = {f"facilflow-{t}-secrets" for t in _prod_tenants()}
    assert holders == tenant_holders | {"facilflow-ray-secrets"}
    values = _values()
    locations = _locations(values)
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    accounts = {}
    for tenant in _prod_tenants():
        own = secrets[f"facilflow-{tenant}-secrets"]
        assert identity <= set(own), tenant
        assert service_accounts[tenant] == [own["MLFLOW_TRACKING_USERNAME"]], tenant
        accounts[tenant] = own["MLFLOW_TRACKING_USERNAME"]
        assert {"name": f"facilflow-{tenant}-secrets"} in locations[tenant]["envSecrets"]
        assert locations[tenant]["includeConfigInLaunchedRuns"]["enabled"] is True
    assert len(set(accounts.values())) == len(accounts)
    # A tenant's secret goes to its own location (and its runs) only; the run launcher's,
    # which every run gets, carry no MLflow identity.
    for attribute, location in locations.items():
        others = holders - {f"facilflow-{attribute}-secrets"}
        assert not others & {s["name"] for s in location["envSecrets"]}, attribute
    assert not holders & {s["name"] for s in launcher["envSecrets"]}


def test_the_mlflow_server_reads_nothing_of_a_tenant_without_a_grant(tmp_path, monkeypatch):
    ini, _ = _auth_ini(tmp_path)
    # Comments take whole lines: MLflow reads the file without inline comments.
    for line in ini.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith(("#", "[")):
            assert "#" not in line, line
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(ini))
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    auth = read_auth_config()  # as MLflow's basic auth reads it
    assert auth.default_permission == "NO_PERMISSIONS"
    # The admin's password is a secret's, not the config map's.
    assert auth.admin_password is None
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" in _named("Secret", "mlflow-secrets")["stringData"]
    config = _named("ConfigMap", "facilflow-config")
    monkeypatch.setenv("FACILFLOW_APPROVERS", config["data"]["FACILFLOW_APPROVERS"])
    governance = server_governance_settings()
    # Every tenant production serves has its users; the endpoint's replicas read every
    # tenant's models as the account of the Ray pods' secret.
    tenant_users = _per_tenant(governance["tenant_users"])
    assert set(tenant_users) == _prod_tenants() and all(tenant_users.values())
    serving = _named("Secret", "facilflow-ray-secrets")["stringData"]["MLFLOW_TRACKING_USERNAME"]
    readers = {n.strip() for n in governance["model_readers"].split(",") if n.strip()}
    assert readers == {serving}
    service_accounts = _per_tenant(governance["service_accounts"])
    assert not [t for t, names in service_accounts.items() if serving in names]  # it only reads
    assert set(_per_tenant(governance["approvers"])) == _prod_tenants()


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


# --- the runs and steps dagster-k8s submits, as the chart configures it -----------------


class RecordedKubernetesApi:
    """Stands in for the Kubernetes batch API (no cluster here): keeps the Jobs it gets."""

    def __init__(self):
        self.jobs: list[tuple[str, kubernetes.client.V1Job]] = []

    def create_namespaced_job(self, body, namespace, **_):
        self.jobs.append((namespace, body))
        return body


def _snake(config: dict) -> dict:
    """The chart's template renames runK8sConfig's keys (containerConfig: container_config)."""
    return {re.sub(r"([A-Z])", r"_\1", key).lower(): value for key, value in config.items()}


def _helm_launcher(values: dict, recorder, kubeconfig: Path) -> K8sRunLauncher:
    """The run launcher the chart configures from `values` (as its instance config map
    template, _run-launcher.tpl, maps them), talking to `recorder`."""
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
        labels=launcher.get("labels"),
        run_k8s_config=_snake(launcher["runK8sConfig"]),
        fail_pod_on_run_failure=launcher["failPodOnRunFailure"],
        k8s_client_batch_api=recorder,
    )


def _container_context(values: dict, location: dict) -> dict:
    """What the chart gives a user deployment's runs (includeConfigInLaunchedRuns): its
    dagsterUserDeployments.k8sContainerContext helper, key by key."""
    context = {
        "image_pull_policy": location["image"]["pullPolicy"],
        "env_config_maps": [
            f"{RELEASE}-dagster-user-deployments-{location['name']}-user-env",
            *(m["name"] for m in location.get("envConfigMaps", [])),
        ],
        "namespace": NAMESPACE,
        "service_account_name": values["global"]["serviceAccountName"],
        "run_k8s_config": {"pod_spec_config": {"automount_service_account_token": True}},
    }
    if location.get("envSecrets"):
        context["env_secrets"] = [s["name"] for s in location["envSecrets"]]
    for key, field in (
        ("volumeMounts", "volume_mounts"),
        ("volumes", "volumes"),
        ("labels", "labels"),
        ("resources", "resources"),
    ):
        if location.get(key):
            context[field] = copy.deepcopy(location[key])
    return {"k8s": context}


class Launched(NamedTuple):
    location: str
    job: dg.JobDefinition
    run: dict  # the run worker's Job, as submitted
    step: dict  # a step worker's Job, as the k8s_job_executor builds it for that run


def _sanitized(job: kubernetes.client.V1Job) -> dict:
    return kubernetes.client.ApiClient().sanitize_for_serialization(job)


def _step_job(launcher: K8sRunLauncher, run, image: str) -> dict:
    """The Job of one step of `run`, built as dagster-k8s' step handler builds it: the run
    launcher's settings and the location's, no run tags (executor.py, K8sStepHandler)."""
    context = K8sContainerContext.create_for_run(run, launcher, include_run_tags=False)
    return _sanitized(
        construct_dagster_k8s_job(
            job_config=context.get_k8s_job_config(image, launcher),
            args=[PYTHON, "-m", "dagster", "api", "execute_step"],
            job_name=f"dagster-step-{run.run_id[:12]}",
            component="step_worker",
            user_defined_k8s_config=context.run_k8s_config,
            labels={"dagster/job": run.job_name, "dagster/run-id": run.run_id},
        )
    )


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> list[Launched]:
    """A run of each job of each location, and a step of it, as dagster-k8s submits them
    from the Helm values (the run launcher, each location's container context)."""
    kubeconfig = tmp_path_factory.mktemp("kube") / "kubeconfig"
    kubeconfig.write_text(  # an unreachable API server: the launcher loads it, never calls it
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
    values = _values()
    recorder = RecordedKubernetesApi()
    launcher = _helm_launcher(values, recorder, kubeconfig)
    found = []
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
                container_context=_container_context(values, location),
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
                namespace, body = recorder.jobs[-1]
                assert namespace == NAMESPACE
                step = _step_job(launcher, run, image)
                found.append(Launched(attribute, job, _sanitized(body), step))
    assert len(recorder.jobs) == len(found) >= 8
    return found


def _pod_spec(job: dict) -> dict:
    return job["spec"]["template"]["spec"]


def test_each_job_becomes_a_kubernetes_job_in_facilflows_image_with_its_settings(launched):
    tenants = load_tenants()
    submitted = {}
    for attribute, job, manifest, step in launched:
        for kind, body in (("run", manifest), ("step", step)):
            _strict("V1Job", body, f"{kind} {body['metadata']['name']}")
            pod = _pod_spec(body)
            names = [v["name"] for v in pod["volumes"]]
            assert len(names) == len(set(names)), names  # each volume once
        assert manifest["metadata"]["labels"]["dagster/job"] == job.name
        submitted[(attribute, job.name)] = manifest
    assert len(submitted) == len(launched)
    for (attribute, name), manifest in submitted.items():
        pod = _pod_spec(manifest)
        [container] = pod["containers"]
        assert container["image"] == IMAGE, name
        assert container["args"][:5] == [PYTHON, "-m", "dagster", "api", "execute_run"], name
        sources = {(k, v["name"]) for f in container["envFrom"] for k, v in f.items()}
        assert ("configMapRef", "facilflow-config") in sources
        tenant_secrets = {n for _, n in sources} & {f"facilflow-{t}-secrets" for t in tenants}
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
    for attribute, job, _, _ in launched:
        if attribute != SHARED_LOCATION:  # the run queue counts each tenant's runs
            assert job.tags[TENANT_TAG] == attribute, job.name
    for tenant in set(_locations(_values())) - {SHARED_LOCATION}:
        training = submitted[(tenant, "flight_delay_training_job")]
        container = _pod_spec(training)["containers"][0]
        assert container["resources"]["limits"]["memory"] == "16Gi"  # its dagster-k8s/config


# --- the pods as they are labelled, and a NetworkPolicy evaluator -----------------------


class Pod(NamedTuple):
    """A peer of a connection: a pod (its namespace and labels) or an address outside the
    cluster (`ip`, no namespace)."""

    name: str
    labels: dict[str, str]
    namespace: str | None = NAMESPACE
    ip: str | None = None

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace} if self.namespace else {}


def _kuberay_labels(cluster: dict, node_type: str, group: str, template: dict) -> dict:
    """The labels KubeRay gives a Ray pod, on top of its template's."""
    name = cluster["metadata"]["name"]
    return {
        **template.get("metadata", {}).get("labels", {}),
        "ray.io/cluster": name,
        "ray.io/node-type": node_type,
        "ray.io/group": group,
        "ray.io/identifier": f"{name}-{node_type}",
        "ray.io/is-ray-node": "yes",
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }


def _chart_pod_labels(values: dict) -> dict[str, dict[str, str]]:
    """The labels Dagster's chart gives its pods: its selector labels, its own `component`,
    and the values' `labels` (templates/helpers/_deployment-webserver.tpl, whose read-only
    copy differs by `component`; templates/deployment-daemon.yaml;
    charts/dagster-user-deployments/templates/deployment-user.yaml)."""
    chart = {"app.kubernetes.io/name": "dagster", "app.kubernetes.io/instance": RELEASE}
    webserver = values["dagsterWebserver"]
    pods = {
        "dagster-webserver": {
            **chart,
            "component": "dagster-webserver",
            **webserver.get("labels", {}),
        },
        "dagster-daemon": {
            **chart,
            "component": "dagster-daemon",
            "deployment": "daemon",
            **values["dagsterDaemon"].get("labels", {}),
        },
    }
    if webserver.get("enableReadOnly"):
        pods["dagster-webserver-read-only"] = {
            **chart,
            "component": "dagster-webserver-read-only",
            **webserver.get("labels", {}),
        }
    subchart = {
        "app.kubernetes.io/name": "dagster-user-deployments",
        "app.kubernetes.io/instance": RELEASE,
    }
    for attribute, location in _locations(values).items():
        pods[f"code-location:{attribute}"] = {
            **subchart,
            "component": "user-deployments",
            "deployment": location["name"],
            **location.get("labels", {}),
        }
    return pods


# The data services in the namespace, labelled as network-policies.yaml asks the operator.
DATA_SERVICES = {"postgres": {"app": "postgres"}, "redis": {"app": "redis"}, "s3": {"app": "s3"}}
KUBERNETES_API = "192.0.2.1"  # network-policies.yaml's placeholder for the API server
OIDC_PROVIDER = "198.51.100.10"  # in its placeholder range for the OIDC provider


def _endpoints(launched: list[Launched]) -> dict[str, list[Pod]]:
    """Every peer by a name, each a list of the pods it stands for."""
    values = _values()
    [cluster] = _objects("RayCluster")
    head = cluster["spec"]["headGroupSpec"]
    workers = cluster["spec"]["workerGroupSpecs"]
    found = {name: [Pod(name, {**labels})] for name, labels in _chart_pod_labels(values).items()}
    found["code-location"] = [p for n, ps in found.items() if n.startswith("code-") for p in ps]
    found["ray-head"] = [
        Pod("ray-head", _kuberay_labels(cluster, "head", "headgroup", head["template"]))
    ]
    found["ray-worker"] = [
        Pod(
            f"ray-worker-{g['groupName']}",
            _kuberay_labels(cluster, "worker", g["groupName"], g["template"]),
        )
        for g in workers
    ]
    for deployment in _objects("Deployment"):
        name = deployment["metadata"]["name"]
        found[name] = [Pod(name, deployment["spec"]["template"]["metadata"]["labels"])]
    found["run"] = [
        Pod(f"run {attribute}/{job.name}", run["spec"]["template"]["metadata"]["labels"])
        for attribute, job, run, _ in launched
    ] + [
        Pod(f"step {attribute}/{job.name}", step["spec"]["template"]["metadata"]["labels"])
        for attribute, job, _, step in launched
    ]
    for name, labels in DATA_SERVICES.items():
        found[name] = [Pod(name, labels)]
    # Outside the namespace.
    controller = {
        "app.kubernetes.io/name": "ingress-nginx",
        "app.kubernetes.io/component": "controller",
    }
    found["ingress-controller"] = [Pod("ingress-controller", controller, "ingress-nginx")]
    found["kube-dns"] = [Pod("kube-dns", {"k8s-app": "kube-dns"}, "kube-system")]
    found["kafka"] = [Pod("kafka-0", {"app.kubernetes.io/name": "kafka"}, "kafka")]
    found["kubernetes-api"] = [Pod("kubernetes-api", {}, None, KUBERNETES_API)]
    found["oidc-provider"] = [Pod("oidc-provider", {}, None, OIDC_PROVIDER)]
    found["internet"] = [Pod("internet", {}, None, "203.0.113.7")]
    # Impostors: a pod of another namespace labelled as a run, one labelled as the ingress
    # controller, and a pod of the namespace that is none of FacilFlow's.
    run_labels = found["run"][0].labels
    found["other-namespace"] = [Pod("other-namespace", {**run_labels}, "elsewhere")]
    found["impostor-controller"] = [Pod("impostor-controller", controller, "elsewhere")]
    found["stray"] = [Pod("stray", {"app": "debug"})]
    return found


def _selects(selector: dict, labels: dict[str, str]) -> bool:
    """A label selector's verdict on `labels` (an empty selector selects everything)."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _peer_matches(peer: dict, policy_namespace: str, other: Pod) -> bool:
    if "ipBlock" in peer:  # addresses outside the cluster
        if other.ip is None:
            return False
        address = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        excluded = any(address in ipaddress.ip_network(c) for c in block.get("except", []))
        return address in ipaddress.ip_network(block["cidr"]) and not excluded
    if other.namespace is None:
        return False
    if "namespaceSelector" in peer:
        namespace_ok = _selects(peer["namespaceSelector"], other.namespace_labels)
    else:
        namespace_ok = other.namespace == policy_namespace
    return namespace_ok and _selects(peer.get("podSelector", {}), other.labels)


def _port_matches(ports: list[dict] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        if "port" not in entry:
            return True
        assert isinstance(entry["port"], int), "named ports are not used"
        if entry["port"] <= port <= entry.get("endPort", entry["port"]):
            return True
    return False


def _policy_types(policy: dict) -> list[str]:
    spec = policy["spec"]
    return spec.get("policyTypes") or ["Ingress", *(["Egress"] if "egress" in spec else [])]


def _selecting(policies: list[dict], pod: Pod, direction: str) -> list[dict]:
    return [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and direction in _policy_types(p)
        and _selects(p["spec"]["podSelector"], pod.labels)
    ]


def _direction_allows(policies, pod: Pod, direction: str, peer: Pod, port, protocol) -> bool:
    """NetworkPolicy semantics for one direction: a pod no policy of that direction selects
    is not isolated; an isolated one is allowed what any rule of any selecting policy
    allows."""
    selecting = _selecting(policies, pod, direction)
    if not selecting:
        return True
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in selecting:
        for rule in policy["spec"].get(rules_key, []):
            peers = rule.get(peers_key)
            namespace = policy["metadata"]["namespace"]
            if (not peers or any(_peer_matches(x, namespace, peer) for x in peers)) and (
                _port_matches(rule.get("ports"), port, protocol)
            ):
                return True
    return False


def _allowed(policies, source: Pod, target: Pod, port: int, protocol: str = "TCP") -> bool:
    """Whether `source` may open a connection to `target`'s port: the source's egress and
    the target's ingress must both allow it (only this namespace's policies are known here:
    other namespaces, and addresses, are taken as not isolated)."""
    out = source.namespace != NAMESPACE or _direction_allows(
        policies, source, "Egress", target, port, protocol
    )
    into = target.namespace != NAMESPACE or _direction_allows(
        policies, target, "Ingress", source, port, protocol
    )
    return out and into


# The flows docs/security.md lists, and a sample of those it rules out: (from, to, port).
ALLOWED = [
    ("run", "ray-head", 10001),
    ("run", "ray-head", 8000),
    ("run", "ray-worker", 8000),
    ("ray-worker", "ray-head", 6379),
    ("ray-head", "ray-worker", 10002),
    ("ray-worker", "ray-worker", 20000),
    ("ingress-controller", "ray-head", 8000),
    ("ingress-controller", "ray-worker", 8000),
    ("ingress-controller", "mlflow", 5000),
    ("ingress-controller", "oauth2-proxy", 4180),
    ("ingress-controller", "oauth2-proxy-operators", 4180),
    ("oauth2-proxy", "dagster-webserver-read-only", 80),
    ("oauth2-proxy-operators", "dagster-webserver", 80),
    ("oauth2-proxy", "oidc-provider", 443),
    ("oauth2-proxy-operators", "oidc-provider", 443),
    ("code-location", "mlflow", 5000),
    ("run", "mlflow", 5000),
    ("ray-worker", "mlflow", 5000),
    ("ray-head", "mlflow", 5000),
    ("dagster-webserver", "code-location", 3030),
    ("dagster-webserver-read-only", "code-location", 3030),
    ("dagster-daemon", "code-location", 3030),
    ("run", "code-location", 3030),
    ("dagster-webserver", "postgres", 5432),
    ("dagster-daemon", "postgres", 5432),
    ("dagster-daemon", "kubernetes-api", 443),
    ("dagster-webserver", "kubernetes-api", 443),
    ("run", "kubernetes-api", 443),
    ("ray-head", "kubernetes-api", 443),
    ("code-location", "postgres", 5432),
    ("code-location", "kafka", 9092),
    ("run", "postgres", 5432),
    ("run", "redis", 6379),
    ("run", "s3", 9000),
    ("run", "kafka", 9092),
    ("ray-worker", "redis", 6379),
    ("ray-worker", "s3", 9000),
    ("mlflow", "postgres", 5432),
    ("mlflow", "s3", 9000),
]
DENIED = [
    # Nothing reaches the Ray dashboard and its job API.
    ("run", "ray-head", 8265),
    ("code-location", "ray-head", 8265),
    ("ray-worker", "ray-head", 8265),
    ("ingress-controller", "ray-head", 8265),
    ("dagster-webserver", "ray-head", 8265),
    ("other-namespace", "ray-head", 8265),
    # The Ray client port: Dagster's runs and code locations only.
    ("ingress-controller", "ray-head", 10001),
    ("code-location", "ray-head", 10001),
    ("other-namespace", "ray-head", 10001),
    ("stray", "ray-head", 10001),
    ("mlflow", "ray-head", 10001),
    ("oauth2-proxy", "ray-head", 10001),
    ("code-location", "ray-worker", 8000),
    ("other-namespace", "ray-head", 8000),
    ("impostor-controller", "ray-head", 8000),
    # The Dagster UI only through its proxy, the writable one only through the operators'.
    ("ingress-controller", "dagster-webserver", 80),
    ("ingress-controller", "dagster-webserver-read-only", 80),
    ("ingress-controller", "code-location", 3030),
    ("oauth2-proxy", "dagster-webserver", 80),
    ("run", "oauth2-proxy", 4180),
    ("run", "dagster-webserver", 80),
    ("stray", "dagster-webserver", 80),
    ("dagster-webserver", "dagster-daemon", 80),
    ("code-location", "dagster-daemon", 3030),
    ("run", "run", 8080),
    # MLflow: its clients and the ingress controller.
    ("other-namespace", "mlflow", 5000),
    ("impostor-controller", "mlflow", 5000),
    ("stray", "mlflow", 5000),
    ("oauth2-proxy", "mlflow", 5000),
    ("dagster-daemon", "mlflow", 5000),
    ("mlflow", "kafka", 9092),
    ("mlflow", "internet", 443),
    # The Ray pods reach no database, no broker, no Dagster, nothing outside.
    ("ray-worker", "postgres", 5432),
    ("ray-head", "postgres", 5432),
    ("ray-worker", "kafka", 9092),
    ("ray-worker", "code-location", 3030),
    ("ray-worker", "kubernetes-api", 443),
    ("ray-worker", "internet", 443),
    ("ray-head", "internet", 443),
    # Code locations: what their sensors use, no more.
    ("code-location", "redis", 6379),
    ("code-location", "s3", 9000),
    ("code-location", "kubernetes-api", 443),
    ("oauth2-proxy", "internet", 443),
    ("oauth2-proxy", "code-location", 3030),
    ("run", "internet", 443),
    ("stray", "postgres", 5432),
]


def _policies() -> list[dict]:
    return _objects("NetworkPolicy")


def _flow_problems(policies: list[dict], endpoints: dict[str, list[Pod]]) -> list[str]:
    problems = []
    for expected, flows in ((True, ALLOWED), (False, DENIED)):
        for source_name, target_name, port in flows:
            for source in endpoints[source_name]:
                for target in endpoints[target_name]:
                    if _allowed(policies, source, target, port) is not expected:
                        verdict = "denied" if expected else "allowed"
                        problems.append(f"{source.name} -> {target.name}:{port} {verdict}")
    # DNS for every pod of the namespace.
    for pods in endpoints.values():
        for pod in pods:
            if pod.namespace == NAMESPACE:
                for dns in endpoints["kube-dns"]:
                    if not _allowed(policies, pod, dns, 53, "UDP"):
                        problems.append(f"{pod.name} -> DNS denied")
    return problems


def _isolation_problems(policies: list[dict], endpoints: dict[str, list[Pod]]) -> list[str]:
    """Every pod of FacilFlow's components is isolated both ways (the default deny) and
    selected by a policy of its own (a non-empty selector)."""
    problems = []
    outsiders = {"stray"}
    for name, pods in endpoints.items():
        for pod in pods:
            if pod.namespace != NAMESPACE or name in outsiders:
                continue
            for direction in ("Ingress", "Egress"):
                if not _selecting(policies, pod, direction):
                    problems.append(f"{pod.name}: not isolated for {direction}")
            own = [
                p
                for direction in ("Ingress", "Egress")
                for p in _selecting(policies, pod, direction)
                if p["spec"]["podSelector"]
            ]
            if not own:
                problems.append(f"{pod.name}: no policy of its own")
    return problems


def test_the_network_policies_let_through_exactly_the_flows_of_the_components(launched):
    policies = _policies()
    for policy in policies:  # stated, not left to defaults
        assert policy["spec"]["policyTypes"], policy["metadata"]["name"]
    default_deny = _named("NetworkPolicy", "default-deny")["spec"]
    assert default_deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    endpoints = _endpoints(launched)
    assert len(endpoints["run"]) == 2 * len(launched)
    # The run and step pods carry the run launcher's label, and dagster-k8s' component.
    components = {p.labels["app.kubernetes.io/component"] for p in endpoints["run"]}
    assert components == {"run_worker", "step_worker"}
    assert all(RUN_ROLE.items() <= p.labels.items() for p in endpoints["run"])
    # No pod but the runs carries it: a code location's labels would pass to its runs.
    others = [
        p for n, ps in endpoints.items() if n != "run" for p in ps if p.namespace == NAMESPACE
    ]
    assert not [p.name for p in others if RUN_ROLE.items() <= p.labels.items()]
    assert _flow_problems(policies, endpoints) == []
    assert _isolation_problems(policies, endpoints) == []


def _loosened(change) -> list[dict]:
    policies = copy.deepcopy(_policies())
    change(policies)
    return policies


def test_a_loosened_policy_is_caught(launched):
    endpoints = _endpoints(launched)
    allow_all = {
        "metadata": {"name": "allow-all", "namespace": NAMESPACE},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]},
    }
    problems = _flow_problems(_loosened(lambda policies: policies.append(allow_all)), endpoints)
    assert "ingress-controller -> ray-head:8265 allowed" in problems
    assert "other-namespace -> mlflow:5000 allowed" in problems

    def expose_the_dashboard(policies):  # the head's rule for Ray's pods on every port
        [head] = [p for p in policies if p["metadata"]["name"] == "ray-head"]
        head["spec"]["ingress"][0].pop("ports")

    problems = _flow_problems(_loosened(expose_the_dashboard), endpoints)
    assert "ray-worker-cpu -> ray-head:8265 allowed" in problems

    def open_ray_egress(policies):
        [ray] = [p for p in policies if p["metadata"]["name"] == "ray-egress"]
        ray["spec"]["egress"].append({})

    problems = _flow_problems(_loosened(open_ray_egress), endpoints)
    assert "ray-worker-cpu -> internet:443 allowed" in problems
    assert "ray-worker-cpu -> kafka-0:9092 allowed" in problems

    def drop_the_default_deny(policies):
        policies[:] = [p for p in policies if p["metadata"]["name"] != "default-deny"]

    problems = _isolation_problems(_loosened(drop_the_default_deny), endpoints)
    assert "dagster-daemon: not isolated for Ingress" in problems
    assert "ray-head: not isolated for Egress" not in problems  # ray-egress still selects it


def _ray_cluster() -> dict:
    [cluster] = _objects("RayCluster")
    return cluster


def _pod_templates() -> dict[str, dict]:
    """Every pod spec of deploy/k8s by a name: the Deployments' and the Ray groups'."""
    found = {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in _objects("Deployment")}
    spec = _ray_cluster()["spec"]
    found["ray-head"] = spec["headGroupSpec"]["template"]["spec"]
    for group in spec["workerGroupSpecs"]:
        found[f"ray-worker-{group['groupName']}"] = group["template"]["spec"]
    return found


def test_no_service_or_port_exposes_the_ray_dashboard():
    for service in _objects("Service"):
        spec = service["spec"]
        assert spec.get("type", "ClusterIP") == "ClusterIP", service["metadata"]["name"]
        assert 8265 not in {p["port"] for p in spec["ports"]}
        assert 8265 not in {p.get("targetPort") for p in spec["ports"]}
    for name, pod in _pod_templates().items():
        for container in pod["containers"]:
            assert 8265 not in {p["containerPort"] for p in container.get("ports", [])}, name
    spec = _ray_cluster()["spec"]
    head = spec["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP"
    # Loopback only: KubeRay's own default is every interface (0.0.0.0).
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    for group in [head, *spec["workerGroupSpecs"]]:
        assert group["rayStartParams"].get("dashboard-host", "127.0.0.1") == "127.0.0.1"
    values = _values()
    assert values["dagsterWebserver"]["service"]["type"] == "ClusterIP"
    assert values["ingress"]["enabled"] is False  # the chart's own Ingress stays off
    text = "\n".join(path.read_text() for path in DEPLOY.rglob("*.yaml"))
    assert not re.search(r"LoadBalancer|NodePort|hostNetwork|hostPort", text)


def test_the_ray_cluster_admits_only_holders_of_its_token():
    auth = _named("Secret", "facilflow-ray-auth")["stringData"]
    # The names Ray reads (Ray 2.60's token authentication).
    assert AUTH_MODE_ENV_VAR == "RAY_AUTH_MODE" and auth[AUTH_MODE_ENV_VAR] == "token"
    assert "`RAY_AUTH_TOKEN`" in str(AuthenticationError("")) and auth["RAY_AUTH_TOKEN"]
    spec = _ray_cluster()["spec"]
    ray_sources = [
        {f["secretRef"]["name"] for f in c["envFrom"] if "secretRef" in f}
        for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        for c in group["template"]["spec"]["containers"]
    ]
    autoscaler = {f["secretRef"]["name"] for f in spec["autoscalerOptions"]["envFrom"]}
    for sources in [*ray_sources, autoscaler]:
        assert "facilflow-ray-auth" in sources
    # Every driver: the runs connect to the cluster (FACILFLOW_RAY_ADDRESS and
    # FACILFLOW_SERVE_RAY_ADDRESS are ray:// addresses).
    launcher = _values()["runLauncher"]["config"]["k8sRunLauncher"]
    assert {"name": "facilflow-ray-auth"} in launcher["envSecrets"]
    config = _named("ConfigMap", "facilflow-config")["data"]
    for name in ("FACILFLOW_RAY_ADDRESS", "FACILFLOW_SERVE_RAY_ADDRESS"):
        address = urlparse(config[name])
        assert (address.scheme, address.port) == ("ray", 10001)
        assert address.hostname.startswith(f"{_ray_cluster()['metadata']['name']}-head-svc.")


# --- which pod holds which secret --------------------------------------------------------


def _env_variables(resource) -> set[str]:
    """The environment variables a resource's settings name (dagster.EnvVar), nested
    resources' included."""
    found = set()
    for value in vars(resource).values():
        if hasattr(value, "env_var_name"):
            found.add(value.env_var_name)
        elif isinstance(value, dg.ConfigurableResource):
            found |= _env_variables(value)
    return found


# What a library reads from the environment when FacilFlow uses a resource, beside the
# resource's own settings: MLflow's client its user and the server's CA; Ray's client its
# token; pyarrow's S3 filesystem (RayResource.storage_filesystem) the checkpoint bucket's
# keys; dbt's prod profile the warehouse's path.
LIBRARY_READS = {
    "mlflow": {
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_SERVER_CERT_PATH",
    },
    "ray_cluster": {
        "RAY_AUTH_MODE",
        "RAY_AUTH_TOKEN",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    },
    "serving": {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"},
    "dbt": {"FACILFLOW_WAREHOUSE_PATH"},
}
# The Ray pods: the endpoint's replicas load registered models with MLflow's client
# (facilflow_assets/serving/endpoint.py) as the read-only account; Ray Train and Ray Tune
# workers write checkpoints; every node holds the cluster's token. The replicas get the
# online store's configuration in their deployment (EndpointSpec.feast_config), from the
# run that deploys them, and record no events: no Redis URL, no outbox.
RAY_POD_READS = {
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "RAY_AUTH_MODE",
    "RAY_AUTH_TOKEN",
}


def _reads(resource_keys: set[str]) -> set[str]:
    """The variables a process using these prod resources reads."""
    built = build_resources(Environment.PROD)
    found = set()
    for key in resource_keys & set(built):
        found |= _env_variables(built[key]) | LIBRARY_READS.get(key, set())
    return found


def _location_resource_keys(attribute: str) -> set[str]:
    """The resources a code location's own process uses: its sensors' and schedules'."""
    repository = getattr(code_locations, attribute).get_repository_def()
    instigators = [*repository.sensor_defs, *repository.schedule_defs]
    return {key for i in instigators for key in getattr(i, "required_resource_keys", set())}


def _run_resource_keys(attribute: str) -> set[str]:
    repository = getattr(code_locations, attribute).get_repository_def()
    jobs = [j for j in repository.get_all_jobs() if not j.name.startswith("__")]
    return {key for job in jobs for key in job.required_resource_keys}


def _secret_keys(pod: dict) -> dict[str, set[str]]:
    """The secret keys each container of a pod spec gets, by secret name."""
    secrets = {s["metadata"]["name"]: set(s["stringData"]) for s in _objects("Secret")}
    found: dict[str, set[str]] = {}
    for container in pod["containers"]:
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                name = source["secretRef"]["name"]
                found.setdefault(name, set()).update(secrets[name])
        for variable in container.get("env", []):
            reference = variable.get("valueFrom", {}).get("secretKeyRef")
            if reference:
                found.setdefault(reference["name"], set()).add(reference["key"])
    return found


def _keys(by_secret: dict[str, set[str]]) -> set[str]:
    return {key for keys in by_secret.values() for key in keys}


def test_each_pod_holds_the_secrets_it_reads_and_no_other(launched):
    secret_keys = {k for keys in _facilflow_secrets().values() for k in keys}
    values = _values()
    locations = _locations(values)
    # The code locations: what their sensors read, the tenant's MLflow account its own.
    for attribute, location in locations.items():
        holds = {s["name"]: set(_facilflow_secrets()[s["name"]]) for s in location["envSecrets"]}
        reads = _reads(_location_resource_keys(attribute)) & secret_keys
        assert _keys(holds) == reads, attribute
    assert _reads(_location_resource_keys(SHARED_LOCATION)) & secret_keys == {
        "FACILFLOW_OUTBOX_URL"
    }
    # The runs: the run launcher's secrets go to every run of every location (the chart has
    # no place for one location's runs only), so each is read by some run; a location's own
    # secrets by its runs.
    run_reads = {a: _reads(_run_resource_keys(a)) & secret_keys for a in locations}
    every_run = set().union(*run_reads.values())
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    launcher_keys = {k for s in launcher["envSecrets"] for k in _facilflow_secrets()[s["name"]]}
    assert launcher_keys <= every_run
    instance = values["global"]["postgresqlSecretName"]  # Dagster's own: DAGSTER_PG_PASSWORD
    for attribute, job, run, step in launched:
        for body in (run, step):
            by_secret = _secret_keys(_pod_spec(body))
            assert by_secret.pop(instance) == {"postgresql-password"}
            holds = _keys(by_secret)
            assert run_reads[attribute] <= holds, (attribute, job.name)
            assert holds <= every_run | launcher_keys, (attribute, job.name)
            assert holds <= launcher_keys | _reads(_run_resource_keys(attribute)), job.name
    # The checkpoint bucket's keys, the online store and the cluster's token: runs, not
    # code locations.
    for attribute, location in locations.items():
        names = {s["name"] for s in location["envSecrets"]}
        assert not names & {
            "facilflow-checkpoint-secrets",
            "facilflow-redis-secrets",
            "facilflow-ray-auth",
            "facilflow-ray-secrets",
        }, attribute
    # The Ray pods: the read-only MLflow account, the checkpoint keys, the token; what the
    # local head also passes its replicas (resources/serving.py), and nothing of the outbox.
    assert "feast_config" in EndpointSpec.__dataclass_fields__
    for name, pod in _pod_templates().items():
        if not name.startswith("ray-"):
            continue
        holds = _secret_keys(pod)
        assert _keys(holds) == RAY_POD_READS & secret_keys, name
        assert set(holds) == {
            "facilflow-ray-auth",
            "facilflow-ray-secrets",
            "facilflow-checkpoint-secrets",
        }, name
        inherited = (*HEAD_INHERITS_PREFIXES, "RAY_AUTH_")
        assert all(key.startswith(inherited) for key in _keys(holds)), name
    # The MLflow server its own secret only; the proxies theirs.
    assert set(_secret_keys(_pod_templates()["mlflow"])) == {"mlflow-secrets"}
    for proxy in ("oauth2-proxy", "oauth2-proxy-operators"):
        holds = _secret_keys(_pod_templates()[proxy])
        assert set(holds) == {"oauth2-proxy-secrets"}
        assert all(key.startswith("OAUTH2_PROXY_") for key in _keys(holds))


# --- TLS and authentication at the edges -------------------------------------------------


def _arguments(container: dict) -> dict[str, str]:
    """A container's `--name=value` arguments."""
    found = {}
    for argument in container["args"]:
        name, _, value = argument.partition("=")
        found[name] = value
    return found


def test_every_edge_has_tls_and_authentication():
    services = {s["metadata"]["name"]: s for s in _objects("Service")}
    certificates = {c["spec"]["secretName"]: c for c in _objects("Certificate")}
    chart_webservers = {f"{RELEASE}-webserver", f"{RELEASE}-webserver-read-only"}
    backends = {}
    for ingress in _objects("Ingress"):
        name, spec = ingress["metadata"]["name"], ingress["spec"]
        assert spec["ingressClassName"] == "nginx"
        hosts = {rule["host"] for rule in spec["rules"]}
        covered = {host for tls in spec["tls"] for host in tls["hosts"]}
        assert hosts <= covered, name
        for tls in spec["tls"]:
            assert set(tls["hosts"]) <= set(certificates[tls["secretName"]]["spec"]["dnsNames"])
        for rule in spec["rules"]:
            for path in rule["http"]["paths"]:
                service = path["backend"]["service"]
                # Only Services of deploy/k8s, never a Dagster webserver of the chart.
                assert service["name"] in services and service["name"] not in chart_webservers
                ports = {p["port"] for p in services[service["name"]]["spec"]["ports"]}
                assert service["port"]["number"] in ports, name
                backends.setdefault(name, set()).add(service["name"])
    # The endpoint: only clients with a certificate of the consumers' CA.
    endpoint = _named("Ingress", "facilflow-endpoint")
    annotations = endpoint["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/auth-tls-verify-client"] == "on"
    namespace, _, secret = annotations["nginx.ingress.kubernetes.io/auth-tls-secret"].partition("/")
    assert namespace == NAMESPACE and "ca.crt" in _named("Secret", secret)["stringData"]
    assert int(annotations["nginx.ingress.kubernetes.io/auth-tls-verify-depth"]) >= 1
    assert backends["facilflow-endpoint"] == {"facilflow-endpoint"}
    service = services["facilflow-endpoint"]["spec"]
    config = _named("ConfigMap", "facilflow-config")["data"]
    assert {p["targetPort"] for p in service["ports"]} == {int(config["FACILFLOW_SERVE_PORT"])}
    cluster = _ray_cluster()
    spec = cluster["spec"]
    for group, node_type, template in [
        ("headgroup", "head", spec["headGroupSpec"]["template"]),
        *[(g["groupName"], "worker", g["template"]) for g in spec["workerGroupSpecs"]],
    ]:
        assert _selects(
            {"matchLabels": service["selector"]},
            _kuberay_labels(cluster, node_type, group, template),
        )
    # The MLflow UI: re-encrypted to the server, which signs its users in itself.
    mlflow_ingress = _named("Ingress", "mlflow")
    assert (
        mlflow_ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"]
        == "HTTPS"
    )
    assert backends["mlflow"] == {"mlflow"}
    # The Dagster UI: only through an authenticating proxy, the writable one only through
    # the operators'.
    upstreams = {}
    for proxy in ("oauth2-proxy", "oauth2-proxy-operators"):
        arguments = _arguments(_container(_named("Deployment", proxy)))
        upstream = urlparse(arguments["--upstream"])
        assert upstream.hostname.split(".")[0] in chart_webservers
        assert arguments["--provider"] == "oidc" and arguments["--cookie-secure"] == "true"
        assert arguments["--allowed-group"] and arguments["--email-domain"] not in {"", "*"}
        upstreams[proxy] = (upstream.hostname.split(".")[0], arguments["--allowed-group"])
    assert upstreams["oauth2-proxy"][0] == f"{RELEASE}-webserver-read-only"
    assert upstreams["oauth2-proxy-operators"][0] == f"{RELEASE}-webserver"
    assert upstreams["oauth2-proxy"][1] != upstreams["oauth2-proxy-operators"][1]
    assert backends["dagster"] == {"oauth2-proxy"}
    assert backends["dagster-operators"] == {"oauth2-proxy-operators"}
    assert _values()["dagsterWebserver"]["enableReadOnly"] is True


def test_mlflow_serves_tls_and_every_client_verifies_it(launched):
    server = _named("Deployment", "mlflow")
    container = _container(server)
    # MLflow's own command line parses the arguments as the pod passes them.
    context = mlflow_server_command.make_context("server", list(container["args"]))
    options = shlex.split(context.params["uvicorn_opts"])
    uvicorn_command = getattr(uvicorn.main.main, "__self__", uvicorn.main.main)
    assert isinstance(uvicorn_command, click.Command)
    uvicorn_options = {o for p in uvicorn_command.params for o in p.opts}
    assert {"--ssl-keyfile", "--ssl-certfile"} <= uvicorn_options
    files = dict(zip(options[::2], options[1::2], strict=True))
    volumes = {v["name"]: v for v in server["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    for option, key in (("--ssl-keyfile", "tls.key"), ("--ssl-certfile", "tls.crt")):
        directory, file = posixpath.split(files[option])
        secret = volumes[mounts[directory]]["secret"]
        assert secret["secretName"] == "mlflow-tls"
        assert {"key": key, "path": file} in secret["items"]
    certificate = _named("Certificate", "mlflow")["spec"]
    assert certificate["secretName"] == "mlflow-tls"
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert context.params["host"] == "0.0.0.0"  # the pod network: the policies guard it
    # The clients' URI is https, to a name of the certificate that MLflow answers to.
    config = _named("ConfigMap", "facilflow-config")["data"]
    uri = urlparse(config["MLFLOW_TRACKING_URI"])
    assert uri.scheme == "https" and uri.hostname in certificate["dnsNames"]
    allowed_hosts = [h.strip() for h in context.params["allowed_hosts"].split(",")]
    assert is_allowed_host_header(allowed_hosts, uri.netloc)
    ui_host = _named("Ingress", "mlflow")["spec"]["rules"][0]["host"]
    assert is_allowed_host_header(allowed_hosts, ui_host) and ui_host in certificate["dnsNames"]
    assert not is_allowed_host_header(allowed_hosts, "attacker.example.net")
    # Every pod that talks to MLflow (the policies let it) verifies its certificate with
    # the namespace's CA, mounted where MLFLOW_TRACKING_SERVER_CERT_PATH says.
    path = config["MLFLOW_TRACKING_SERVER_CERT_PATH"]
    directory, file = posixpath.split(path)
    assert file in _named("ConfigMap", "facilflow-ca")["data"]
    values = _values()
    pods = {name: pod for name, pod in _pod_templates().items() if name != "mlflow"}
    for attribute, location in _locations(values).items():
        pods[f"code-location:{attribute}"] = {
            "containers": [
                {
                    "envFrom": [{"configMapRef": m} for m in location["envConfigMaps"]],
                    "volumeMounts": location["volumeMounts"],
                }
            ],
            "volumes": location["volumes"],
        }
    for attribute, job, run, step in launched:
        pods[f"run {attribute}/{job.name}"] = _pod_spec(run)
        pods[f"step {attribute}/{job.name}"] = _pod_spec(step)
    endpoints = _endpoints(launched)
    [mlflow] = endpoints["mlflow"]
    clients = {
        pod.name
        for name, peers in endpoints.items()
        for pod in peers
        if pod.namespace == NAMESPACE
        and name != "mlflow"
        and _allowed(_policies(), pod, mlflow, 5000)
    }
    assert clients and clients <= set(pods), clients - set(pods)
    for name in clients:
        pod = pods[name]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            config_maps = {
                f.get("configMapRef", {}).get("name") for f in container.get("envFrom", [])
            }
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert (
                "facilflow-config" in config_maps
                or env.get("MLFLOW_TRACKING_SERVER_CERT_PATH") == path
            ), name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert volumes[mounts[directory]]["configMap"]["name"] == "facilflow-ca", name


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
