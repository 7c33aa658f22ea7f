"""An MLflow server app that enforces the approval protocol: MLflow's basic-auth app, plus
rules on the decision tags of model versions.

Started as `mlflow server --app-name facilflow-governance` (auth settings as for
basic-auth, through MLFLOW_AUTH_CONFIG_PATH; approvers in FACILFLOW_APPROVERS, one list or
one per tenant):
- only a designated approver of the model (of its tenant) may set `facilflow.decision*`,
  and not on their own request;
- `facilflow.decision.by` and `facilflow.request.by` may only name the authenticated user,
  and setting `facilflow.decision` stamps that user into `facilflow.decision.by`.
"""

import json

from flask import Flask, Response, request
from mlflow.entities.model_registry import ModelVersionTag
from mlflow.exceptions import MlflowException
from mlflow.server import app as mlflow_app
from mlflow.server.auth import create_app as create_basic_auth_app
from mlflow.server.handlers import _get_model_registry_store

from facilflow_assets.environment import server_approvers
from facilflow_assets.governance.requests import (
    DECISION,
    DECISION_AT,
    DECISION_BY,
    DECISION_COMMENT,
    REQUEST_BY,
)

DECISION_TAGS = {DECISION, DECISION_AT, DECISION_BY, DECISION_COMMENT}
SET_TAG_PATHS = {f"/{prefix}/2.0/mlflow/model-versions/set-tag" for prefix in ("api", "ajax-api")}


def create_app(app: Flask = mlflow_app):
    served = create_basic_auth_app(app)  # the Flask app, wrapped for MLflow's ASGI server
    # Registered after basic auth's own hook, so only authenticated requests reach it.
    app.before_request(_govern_version_tags)
    return served


def _govern_version_tags() -> Response | None:
    if request.method != "POST" or request.path not in SET_TAG_PATHS:
        return None
    body = request.get_json(silent=True) or {}
    key, value = body.get("key", ""), body.get("value", "")
    user = request.authorization.username if request.authorization else ""
    if key == REQUEST_BY and value != user:
        return _deny(f"{REQUEST_BY} must name the authenticated user {user}, not '{value}'")
    if key not in DECISION_TAGS:
        return None
    if key == DECISION_BY and value != user:
        return _deny(f"{DECISION_BY} must name the authenticated user {user}, not '{value}'")
    model = body.get("name", "")
    if user not in server_approvers(model):
        return _deny(f"{user} is not a designated approver of {model}; only its approvers decide")
    store = _get_model_registry_store()
    try:
        version = store.get_model_version(model, str(body.get("version", "")))
    except MlflowException as error:
        return _deny(error.message, status=404)
    if version.tags.get(REQUEST_BY) == user:
        return _deny(f"{user} requested this transition and cannot decide it")
    if key == DECISION:
        store.set_model_version_tag(
            version.name, version.version, ModelVersionTag(DECISION_BY, user)
        )
    return None


def _deny(message: str, status: int = 403) -> Response:
    code = "PERMISSION_DENIED" if status == 403 else "RESOURCE_DOES_NOT_EXIST"
    return Response(
        json.dumps({"error_code": code, "message": message}),
        status=status,
        mimetype="application/json",
    )
