"""Putting versions on the live endpoint: check them, try them on the cluster where no client
is routed, then update the endpoint and ask it once. Used by the deployment asset and by
`facilflow serve start`."""

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TypedDict

import dagster as dg
import numpy as np
import requests
from feast import FeatureStore
from feast.errors import FeatureServiceNotFoundException
from pydantic import Field
from ray import serve
from ray.serve.deployment import Application
from ray.serve.schema import ApplicationStatus

from facilflow_assets.events.envelope import Deployed, EventType
from facilflow_assets.features.online_coverage import unloaded_features
from facilflow_assets.features.target_rows import latest_keys
from facilflow_assets.governance.integrity import GovernanceViolation
from facilflow_assets.governance.lifecycle_events import violation_event
from facilflow_assets.scope import ModelScope
from facilflow_assets.serving.endpoint import EndpointSpec, PredictionEndpoint, Routing
from facilflow_assets.serving.models import (
    PRODUCTION,
    LoadedModel,
    ModelLoadError,
    ModelRef,
    confirmed,
    decided_at,
    load,
)
from facilflow_assets.use_case import UseCase
from resources import (
    EventsResource,
    FeastResource,
    MlflowResource,
    ServingResource,
    StorageResource,
)

STAGING = "Staging"
SMOKE_TIMEOUT_S = 30
PREFLIGHT_POLL_S = 0.5


class UpdateRefused(RuntimeError):
    """The new replicas did not start on the cluster; the endpoint kept what it served."""


class DeploymentConfig(dg.Config):
    """What to serve and how: the deployment asset's run config, and `serve start`'s options."""

    challenger_share: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Share of requests answered by the Staging version; 0 serves Production only.",
    )
    num_replicas: int = Field(default=1, ge=1)
    max_replicas_per_node: int | None = Field(
        default=None,
        ge=1,
        description="At most this many replicas on one node: 1 keeps them on different nodes, "
        "so a node lost takes one replica with it; unset, Ray Serve places them.",
    )
    decision_threshold: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Decide at this probability instead of each version's own threshold "
        "(chosen by its evaluation, as the use case file's `decision` says).",
    )
    trial_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="How long the new replicas may take to start on the cluster (a few "
        "seconds on an idle node) before the update is refused and the endpoint kept.",
    )


@dataclass(frozen=True)
class Served:
    url: str
    production: ModelRef
    challenger: ModelRef | None
    challenger_share: float
    sample: dict[str, str]
    answer: dict
    deployed_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class _Placement(TypedDict, total=False):
    """Ray Serve's placement options that a deployment sets only when configured."""

    max_replicas_per_node: int


def _deciding(ref: ModelRef, use_case: UseCase, rollout: DeploymentConfig) -> ModelRef:
    """`ref` with the threshold its answers are decided at."""
    return replace(ref, decision_threshold=decided_at(ref, use_case, rollout.decision_threshold))


def app_name(scope: ModelScope) -> str:
    return f"{scope.tenant}-{scope.use_case}"


def route_prefix(scope: ModelScope) -> str:
    return f"/{scope.tenant}/{scope.use_case}/predict"


def roll_out(
    rollout: DeploymentConfig,
    use_case: UseCase,
    scope: ModelScope,
    storage: StorageResource,
    mlflow: MlflowResource,
    feast: FeastResource,
    serving: ServingResource,
    events: EventsResource,
    log: Callable[[str], None],
    dagster_run_id: str | None = None,
) -> Served:
    """Check the Production (and Staging) versions, then serve them; a version that fails
    a check, or whose replicas do not start, stays out and the endpoint keeps what it
    served. Records MODEL_DEPLOYED."""
    client = mlflow.client()
    name = scope.registered_model_name
    try:  # checked before the live endpoint is touched: it keeps its versions otherwise
        production = confirmed(client, name, PRODUCTION)
        challenger = None
        if rollout.challenger_share > 0:
            challenger = confirmed(client, name, STAGING)
            if challenger.version == production.version:
                raise ModelLoadError(f"{name}: the Staging version is the Production one")
        loaded = [load(client, ref) for ref in filter(None, (production, challenger))]
    except GovernanceViolation as violation:
        events.record([violation_event(scope, "prediction_endpoint", str(violation))])
        raise
    production = _deciding(production, use_case, rollout)
    challenger = challenger and _deciding(challenger, use_case, rollout)
    routing = Routing(
        production=production, challenger=challenger, challenger_share=rollout.challenger_share
    )
    sample = latest_keys(storage, use_case)
    for model in loaded:
        smoke_prediction(model, feast.feature_store(scope), sample, use_case.task)
        log(f"{model.ref.uri} loads and predicts on {model.ref.feature_service}")
    spec = EndpointSpec(
        tracking_uri=mlflow.tracking_uri,
        feast_config=feast.repo_config(scope),
        entity_keys=use_case.target.keys,
        answer_field=use_case.answer_field,
        request_log_root=serving.request_log_path(scope),
        decides=use_case.task == "binary",
    )
    url = serving.endpoint_url(route_prefix(scope))
    application = _application(spec, routing, rollout)
    with serving.connect():
        preflight(application, app_name(scope), rollout.trial_timeout_s)
        log(f"the new replicas start on the cluster; updating {url}")
        serve.run(application, name=app_name(scope), route_prefix=route_prefix(scope))
    answer = check_endpoint(url, sample)
    if answer.get("model_version") not in {production.version, getattr(challenger, "version", "")}:
        raise RuntimeError(f"{url} answered with {answer}, not the versions just deployed")
    log(f"{url}: {production.uri} with {rollout.challenger_share:.0%} to challenger")
    event = scope.event(
        EventType.MODEL_DEPLOYED,
        Deployed(
            url=url,
            challenger_version=challenger.version if challenger else None,
            challenger_share=rollout.challenger_share,
        ),
        version=production.version,
        dagster_run_id=dagster_run_id,
        once_per=dagster_run_id or uuid.uuid4().hex,
    )
    events.record([event])
    return Served(url, production, challenger, rollout.challenger_share, sample, answer)


def _application(spec: EndpointSpec, routing: Routing, rollout: DeploymentConfig) -> Application:
    placement: _Placement = {}
    if rollout.max_replicas_per_node:
        placement["max_replicas_per_node"] = rollout.max_replicas_per_node
    return PredictionEndpoint.options(
        num_replicas=rollout.num_replicas,
        user_config=routing.model_dump(mode="json"),
        max_surge_percent=_surge_percent(rollout),
        **placement,
    ).bind(spec)


def _surge_percent(rollout: DeploymentConfig) -> int:
    """Ray Serve restarts the replicas on every update (a deployment run from code gets a
    new version each time). Allowed a surge, it starts each successor before stopping the
    replica it replaces, so a lone replica never leaves the endpoint with none. Not with
    one replica per node: the successor could find no node to go to, and the update would
    wait for one; there, replicas restart one at a time."""
    return 0 if rollout.max_replicas_per_node else 100


def preflight(application: Application, name: str, timeout_s: float) -> None:
    """Start `application` once on the cluster, placed as the live one, under another name
    and with no HTTP route, before the live endpoint is touched. Ray Serve replaces a
    deployment's replicas by stopping old ones before the new ones start (requests wait
    meanwhile), so an update whose replicas cannot start (a model or a feature store they
    cannot reach, a node they cannot run on, no room to place them) would leave the endpoint
    with none, answering 503. Here they fail where no client is routed."""
    trial = f"{name}-preflight"
    target = serve.RunTarget(target=application, name=trial, route_prefix=None)
    try:
        serve.run_many([target], wait_for_applications_running=False)
        problem = _not_running_within(trial, timeout_s)
    finally:  # its replicas stop in the background; no client is routed to them
        serve.delete(trial, _blocking=False)
    if problem:
        raise UpdateRefused(
            f"the new replicas of {name} did not start, so the endpoint was not updated and "
            f"serves what it served: {problem}"
        )


def _not_running_within(application: str, timeout_s: float) -> str | None:
    """None once `application` runs; what stops it, if it failed or did not run in time."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = serve.status().applications[application]
        if status.status == ApplicationStatus.RUNNING:
            return None
        if status.status == ApplicationStatus.DEPLOY_FAILED:
            return status.message
        if time.monotonic() > deadline:
            return f"not running after {timeout_s} s ({status.status}: {status.message})"
        time.sleep(PREFLIGHT_POLL_S)


def smoke_prediction(
    model: LoadedModel, store: FeatureStore, request: dict[str, str], task: str = "binary"
) -> float:
    """Predict `request` through the online store, on the feature service the model was
    trained on; the model's inputs must all be served and the prediction be a number (a
    probability, for a binary task)."""
    feature_service = model.ref.feature_service
    try:
        service = store.get_feature_service(feature_service)
    except FeatureServiceNotFoundException:
        raise ModelLoadError(
            f"{model.ref.uri} was trained on the feature service '{feature_service}', which "
            f"the Feast project {store.project} does not hold"
        ) from None
    unloaded = unloaded_features(store, service)
    if unloaded:
        views = "; ".join(f"view '{v}' ({', '.join(f)})" for v, f in unloaded.items())
        raise ModelLoadError(
            f"{model.ref.uri} reads features the online store has not loaded: {views}. "
            "A view new or changed in the registry is loaded by the next materialization "
            "of online_store; not deploying before, the endpoint would answer without them"
        )
    online = store.get_online_features(
        features=service, entity_rows=[request], full_feature_names=True
    ).to_dict()
    missing = [name for name in model.input_names if name not in online]
    if missing:
        raise ModelLoadError(
            f"{model.ref.uri} takes inputs the feature service {feature_service} does not "
            f"serve: {', '.join(missing)}"
        )
    [prediction] = model.predict_frame(model.input_frame(online))
    in_range = 0 <= prediction <= 1 if task == "binary" else True
    if not np.isfinite(prediction) or not in_range:
        raise ModelLoadError(f"{model.ref.uri} predicted {prediction} for {request}")
    return float(prediction)


def check_endpoint(url: str, request: dict[str, str]) -> dict:
    response = requests.post(url, json=request, timeout=SMOKE_TIMEOUT_S)
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:500]}")
    return response.json()
