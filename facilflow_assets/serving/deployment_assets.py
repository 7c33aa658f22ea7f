"""The deployment asset: its materialization is the live endpoint serving the Production
version (and a Staging challenger for a share of requests) on Ray Serve."""

from datetime import UTC, datetime
from typing import TypedDict

import dagster as dg
import numpy as np
import polars as pl
import requests
from feast import FeatureStore
from feast.errors import FeatureServiceNotFoundException
from pydantic import Field
from ray import serve

from facilflow_assets.asset_keys import DEPLOYMENT_GROUP, UseCaseKeys
from facilflow_assets.events.envelope import Deployed, EventType
from facilflow_assets.features.target_rows import latest_keys
from facilflow_assets.governance.integrity import GovernanceViolation
from facilflow_assets.governance.lifecycle_events import violation_event
from facilflow_assets.scope import ModelScope
from facilflow_assets.serving.endpoint import EndpointSpec, PredictionEndpoint, Routing
from facilflow_assets.serving.models import (
    PRODUCTION,
    LoadedModel,
    ModelLoadError,
    confirmed,
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


class DeploymentConfig(dg.Config):
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
    decision_threshold: float = Field(default=0.5, ge=0, le=1)


class _Placement(TypedDict, total=False):
    """Ray Serve's placement options that a deployment sets only when configured."""

    max_replicas_per_node: int


def app_name(scope: ModelScope) -> str:
    return f"{scope.tenant}-{scope.use_case}"


def route_prefix(scope: ModelScope) -> str:
    return f"/{scope.tenant}/{scope.use_case}/predict"


def build_deployment_assets(use_case: UseCase, scope: ModelScope) -> list[dg.AssetsDefinition]:
    """The use case's live endpoint."""
    keys = UseCaseKeys(scope)

    @dg.asset(
        key=keys.prediction_endpoint,
        group_name=DEPLOYMENT_GROUP,
        kinds={"ray", "mlflow", "feast"},
        deps=[keys.registered_model_version, keys.online_store],
        description="The real-time endpoint on Ray Serve: the Production version by its alias, "
        "and the Staging version as challenger for the configured share of requests.",
    )
    def prediction_endpoint(
        context: dg.AssetExecutionContext,
        config: DeploymentConfig,
        storage: StorageResource,
        mlflow: MlflowResource,
        feast: FeastResource,
        serving: ServingResource,
        events: EventsResource,
    ) -> dg.MaterializeResult:
        return deploy(context, config, use_case, scope, storage, mlflow, feast, serving, events)

    return [prediction_endpoint]


def deploy(
    context: dg.AssetExecutionContext,
    config: DeploymentConfig,
    use_case: UseCase,
    scope: ModelScope,
    storage: StorageResource,
    mlflow: MlflowResource,
    feast: FeastResource,
    serving: ServingResource,
    events: EventsResource,
) -> dg.MaterializeResult:
    """Check the Production (and Staging) versions, then serve them; a version that fails
    a check stays out and the endpoint keeps what it served."""
    client = mlflow.client()
    name = scope.registered_model_name
    try:  # checked before the live endpoint is touched: it keeps its versions otherwise
        production = confirmed(client, name, PRODUCTION)
        challenger = None
        if config.challenger_share > 0:
            challenger = confirmed(client, name, STAGING)
            if challenger.version == production.version:
                raise ModelLoadError(f"{name}: the Staging version is the Production one")
        loaded = [load(client, ref) for ref in filter(None, (production, challenger))]
    except GovernanceViolation as violation:
        events.record([violation_event(scope, "prediction_endpoint", str(violation))])
        raise
    routing = Routing(
        production=production, challenger=challenger, challenger_share=config.challenger_share
    )
    sample = latest_keys(storage, use_case)
    # Checked here, before the live endpoint is touched: a version that fails stays out.
    for model in loaded:
        smoke_prediction(model, feast.feature_store(scope), sample, use_case.task)
        context.log.info(f"{model.ref.uri} loads and predicts on {model.ref.feature_service}")
    spec = EndpointSpec(
        tracking_uri=mlflow.tracking_uri,
        feast_config=feast.repo_config(scope),
        entity_keys=use_case.target.keys,
        answer_field=use_case.answer_field,
        request_log_root=serving.request_log_path(scope),
        decision_threshold=config.decision_threshold if use_case.task == "binary" else None,
    )
    placement: _Placement = {}
    if config.max_replicas_per_node:
        placement["max_replicas_per_node"] = config.max_replicas_per_node
    application = PredictionEndpoint.options(
        num_replicas=config.num_replicas,
        user_config=routing.model_dump(mode="json"),
        **placement,
    ).bind(spec)
    url = serving.endpoint_url(route_prefix(scope))
    with serving.connect():
        serve.run(application, name=app_name(scope), route_prefix=route_prefix(scope))
    answer = check_endpoint(url, sample)
    if answer.get("model_version") not in {production.version, getattr(challenger, "version", "")}:
        raise RuntimeError(f"{url} answered with {answer}, not the versions just deployed")
    deployed_at = datetime.now(UTC)
    context.log.info(f"{url}: {production.uri} with {routing.challenger_share:.0%} to challenger")
    event = scope.event(
        EventType.MODEL_DEPLOYED,
        Deployed(
            url=url,
            challenger_version=challenger.version if challenger else None,
            challenger_share=config.challenger_share,
        ),
        version=production.version,
        dagster_run_id=context.run.run_id,
        once_per=context.run.run_id,
    )
    events.record([event])
    return dg.MaterializeResult(
        metadata={
            "url": dg.MetadataValue.url(url),
            "production_version": production.version,
            "challenger_version": challenger.version if challenger else "",
            "challenger_share": config.challenger_share,
            "deployed_at": deployed_at.isoformat(),
            "replicas": config.num_replicas,
            "sample_request": dg.MetadataValue.json(sample),
            "sample_answer": dg.MetadataValue.json(answer),
        }
    )


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
    online = store.get_online_features(
        features=service, entity_rows=[request], full_feature_names=True
    ).to_dict()
    missing = [name for name in model.input_names if name not in online]
    if missing:
        raise ModelLoadError(
            f"{model.ref.uri} takes inputs the feature service {feature_service} does not "
            f"serve: {', '.join(missing)}"
        )
    row = pl.DataFrame({name: online[name] for name in model.input_names})
    [prediction] = model.predict(row.cast(pl.Float32).to_numpy())
    in_range = 0 <= prediction <= 1 if task == "binary" else True
    if not np.isfinite(prediction) or not in_range:
        raise ModelLoadError(f"{model.ref.uri} predicted {prediction} for {request}")
    return float(prediction)


def check_endpoint(url: str, request: dict[str, str]) -> dict:
    response = requests.post(url, json=request, timeout=SMOKE_TIMEOUT_S)
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:500]}")
    return response.json()
