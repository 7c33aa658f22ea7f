"""The real-time endpoint: a Ray Serve deployment answering HTTP JSON with a prediction.

A request names the row to predict (a flight, say) by the use case's keys. The replica
reads the feature service's features from the Feast online store, predicts with the
version its route picks (production, or the challenger for its share), answers, and
queues a record for the request log. The models and the split are the deployment's
`user_config`, which `reconfigure` applies: a model is swapped in only once it loaded.
"""

import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feast import FeatureService, FeatureStore, RepoConfig
from mlflow.tracking import MlflowClient
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from facilflow_assets.features.online_coverage import unloaded_features
from facilflow_assets.serving.models import LoadedModel, ModelRef, load
from facilflow_assets.serving.request_log import RequestLog
from facilflow_assets.serving.routing import CHALLENGER_ROLE, PRODUCTION_ROLE, route

log = logging.getLogger(__name__)
REQUEST_ID_HEADER = "x-request-id"  # Ray Serve's own: it also echoes it in the response


@dataclass(frozen=True)
class EndpointSpec:
    """What a replica needs that does not change between model versions."""

    tracking_uri: str
    feast_config: RepoConfig
    entity_keys: list[str]
    # The answer's field: the decision named after the label ({"is_delayed": true}), or the
    # amount as `predicted_<label>` for a regression.
    answer_field: str
    request_log_root: Path
    decides: bool = True  # a decision at the version's threshold; else the amount itself


class Routing(BaseModel):
    """The deployment's user_config: who serves, and the challenger's share."""

    model_config = ConfigDict(extra="forbid")

    production: ModelRef
    challenger: ModelRef | None = None
    challenger_share: float = Field(default=0.0, ge=0.0, le=1.0)


def request_model(entity_keys: list[str]) -> type[BaseModel]:
    """The request body: every entity key as a string, an optional request id, no more."""
    fields: dict[str, Any] = {key: (str, Field(min_length=1)) for key in entity_keys}
    fields["request_id"] = (str | None, None)
    return create_model(
        "PredictionRequest", __config__=ConfigDict(extra="forbid", strict=True), **fields
    )


def validation_problems(error: ValidationError) -> dict[str, str]:
    """Offending field -> what is wrong with it."""
    return {
        ".".join(str(part) for part in problem["loc"]) or "body": problem["msg"]
        for problem in error.errors()
    }


@serve.deployment(name="prediction_endpoint", ray_actor_options={"num_cpus": 0})
class PredictionEndpoint:
    def __init__(self, spec: EndpointSpec):
        self.spec = spec
        self.client = MlflowClient(tracking_uri=spec.tracking_uri, registry_uri=spec.tracking_uri)
        self.store = FeatureStore(config=spec.feast_config)
        self.services: dict[str, FeatureService] = {}  # each model's, by name
        self.body_model = request_model(spec.entity_keys)
        self.models: dict[str, LoadedModel] = {}
        self.routing: Routing | None = None
        self.feature_names: list[str] | None = None
        self.request_log: RequestLog | None = None

    def reconfigure(self, user_config: dict) -> None:
        """Load any version not loaded yet, with the feature service it was trained on,
        then switch to the new routing at once."""
        routing = Routing.model_validate(user_config)
        refs = [routing.production, *([routing.challenger] if routing.challenger else [])]
        loaded = {ref.uri: self.models.get(ref.uri) or load(self.client, ref) for ref in refs}
        services = {
            ref.feature_service: self.services.get(ref.feature_service)
            or self.store.get_feature_service(ref.feature_service)
            for ref in refs
        }
        # A replica starting while a view's new features await their load would answer
        # without them, as if missing: it refuses to start instead, and the others serve.
        for service in services.values():
            if unloaded := unloaded_features(self.store, service):
                raise RuntimeError(
                    f"the online store has not loaded {unloaded} of {service.name}; "
                    "materialize online_store"
                )
        # The log has a column per input of any version served, Production's first.
        inputs = list(dict.fromkeys(n for m in loaded.values() for n in m.input_names))
        if self.request_log is None or inputs != self.feature_names:
            if self.request_log is not None:
                self.request_log.close()
            categorical = {n for m in loaded.values() for n in m.categories}
            self.request_log = RequestLog(
                self.spec.request_log_root, inputs, categorical=categorical
            )
        self.feature_names = inputs
        self.models, self.services, self.routing = loaded, services, routing
        log.info("serving %s", routing.model_dump_json())

    def __del__(self):
        if self.request_log is not None:
            self.request_log.close()

    async def __call__(self, request: Request) -> JSONResponse:
        started = time.perf_counter()
        request_id = request.headers.get(REQUEST_ID_HEADER) or ""
        record: dict[str, Any] = {}
        try:
            body = await request.json()
        except ValueError:
            return self._answer(400, {"error": "the body is not JSON"}, request_id, record, started)
        if not isinstance(body, dict):
            problem = {"error": "the body must be a JSON object of entity keys"}
            return self._answer(422, problem, request_id, record, started)
        try:
            keys = self.body_model.model_validate(body)
        except ValidationError as error:
            problem = {"error": "invalid request", "fields": validation_problems(error)}
            return self._answer(422, problem, request_id or body.get("request_id"), record, started)
        # The body's id first: Ray Serve gives every request an x-request-id of its own.
        # `request_id` is a field of every request model, which `request_model` builds at run time
        request_id = getattr(keys, "request_id", None) or request_id or str(uuid.uuid4())
        try:
            return self._predict(keys, request_id, record, started)
        except Exception as error:  # answered as 500 and logged with the request id
            log.exception("request %s failed", request_id)
            problem = {"error": f"prediction failed: {type(error).__name__}"}
            return self._answer(500, problem, request_id, record, started)

    def _predict(self, keys: BaseModel, request_id: str, record: dict, started: float):
        routing = self.routing
        if routing is None:
            raise RuntimeError("no routing yet: the deployment's user_config has not arrived")
        challenger = routing.challenger
        role = route(request_id, routing.challenger_share) if challenger else PRODUCTION_ROLE
        ref = challenger if challenger and role == CHALLENGER_ROLE else routing.production
        record.update(model=ref.name, model_version=ref.version, role=role)  # errors too
        model = self.models[ref.uri]
        row = {key: getattr(keys, key) for key in self.spec.entity_keys}
        online = self.store.get_online_features(
            features=self.services[ref.feature_service], entity_rows=[row], full_feature_names=True
        ).to_dict()
        inputs = model.input_frame(online)
        prediction = float(model.predict_frame(inputs)[0])
        record["prediction"] = prediction
        values = inputs.row(0, named=True)
        record.update(values)
        answer = {
            "request_id": request_id,
            "prediction": prediction,
            self.spec.answer_field: prediction >= (ref.decision_threshold or 0.5)
            if self.spec.decides
            else prediction,
            "model": ref.name,
            "model_version": ref.version,
            "role": role,
            "features_found": sum(v is not None for v in values.values()),
            "features_expected": len(values),
        }
        return self._answer(200, answer, request_id, record, started)

    def _answer(self, status: int, body: dict, request_id, record: dict, started: float):
        latency_ms = (time.perf_counter() - started) * 1000
        if self.request_log is not None:
            outcome = "ok" if status < 400 else "invalid" if status < 500 else "error"
            self.request_log.append(
                {
                    **record,
                    "request_id": request_id or None,
                    "outcome": outcome,
                    "status": status,
                    "latency_ms": latency_ms,
                    "error": None if status < 400 else str(body.get("error")),
                }
            )
        return JSONResponse(body, status_code=status)
