"""An MLflow server app that enforces the approval protocol on every route: MLflow's
basic-auth app, plus FacilFlow's rules (`server_rules`) on each state-writing route.

Started as `mlflow server --app-name facilflow-governance`, with MLflow's auth settings in
MLFLOW_AUTH_CONFIG_PATH and, in that file, the section

    [facilflow]
    service_accounts = facilflow    # whom the promotion, evaluation and registry jobs run as

The designated approvers come from FACILFLOW_APPROVERS (one list, or one per tenant), the
setting Dagster's governance resource reads too. Routes served by Flask are governed in a
before-request hook that runs after authentication; routes FastAPI serves itself (artifact
uploads, jobs, the gateway) in a middleware that authenticates the caller first.

With `tenant_users` (and `model_readers`) in the same section, the app also keeps each
tenant's objects readable by its own users only (`tenant_access`).
"""

import json
import os

from fastapi import FastAPI
from flask import Flask, Response, g, request
from mlflow.server import app as mlflow_app
from mlflow.server.auth import _authenticate_fastapi_request
from mlflow.server.auth import create_app as create_basic_auth_app
from mlflow.server.auth import store as auth_store
from mlflow.server.constants import ARTIFACTS_DESTINATION_ENV_VAR, BACKEND_STORE_URI_ENV_VAR
from mlflow.server.handlers import (
    _add_static_prefix,
    _get_model_registry_store,
    _get_tracking_store,
)
from mlflow.tracking import MlflowClient
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Match, Mount

from facilflow_assets.environment import server_governance_settings
from facilflow_assets.governance.audit import GOVERNANCE_ROUTE
from facilflow_assets.governance.server_rules import (
    ALLOWED,
    RULES,
    Call,
    Refusal,
    ServerState,
    rule_for,
)
from facilflow_assets.governance.tenant_access import GovernanceSettings, TenantAccess

READS = {"GET", "HEAD", "OPTIONS"}
_state: ServerState | None = None


def create_app(app: Flask = mlflow_app):
    settings = GovernanceSettings(**server_governance_settings())
    access = TenantAccess(auth_store, settings)
    # Before basic auth's hook: any client may learn that this server records decisions
    # (MLflow's auth would refuse an unknown route to everyone but admins), and a user gets
    # their tenants' roles before MLflow authorises their first request.
    app.before_request(_answer_governance_probe)
    app.before_request(lambda: _give_roles(access))
    served = create_basic_auth_app(app)  # the Flask app, or FastAPI around it under uvicorn
    # Registered after basic auth's own hook, so only authenticated requests reach it.
    app.before_request(lambda: _govern_flask_route(settings))
    app.after_request(lambda response: _grant_created(access, response))
    if isinstance(served, FastAPI):  # not the Flask app itself
        served.middleware("http")(_native_route_guard(served, settings))
    state = _server(settings)
    state.access = access
    access.sync(state.tracking, state.registry)
    return served


def _answer_governance_probe() -> Response | None:
    if request.method == "GET" and request.path == _add_static_prefix(GOVERNANCE_ROUTE):
        return Response(json.dumps({"enforced": True}), mimetype="application/json")
    return None


def _give_roles(access: TenantAccess) -> None:
    """Whoever the request claims to be gets the roles the settings give that user: granting
    them before the password is checked gives nothing the user does not already own."""
    if request.authorization and request.authorization.username:
        access.member_seen(request.authorization.username)


# Routes that create or rename an experiment or a registered model, with how each names it.
CREATED = {
    "_create_experiment": lambda body, response: (response["experiment_id"], body["name"]),
    "_update_experiment": lambda body, _: (body["experiment_id"], body.get("new_name", "")),
    "_create_registered_model": lambda body, _: body["name"],
    "_rename_registered_model": lambda body, _: body.get("new_name", ""),
}


def _grant_created(access: TenantAccess, response: Response) -> Response:
    """The permissions of a tenant's experiment or model, as soon as it exists."""
    named = CREATED.get(request.endpoint or "")
    if named is None or response.status_code != 200:
        return response
    body = request.get_json(silent=True) or {}
    created = named(body, response.get_json(silent=True) or {})
    if isinstance(created, tuple):
        access.experiment_created(*created)
    else:
        access.model_created(created)
    return response


def _server(settings: GovernanceSettings) -> ServerState:
    global _state
    if _state is None:
        backend = os.environ[BACKEND_STORE_URI_ENV_VAR]
        _state = ServerState(
            tracking=_get_tracking_store(),
            registry=_get_model_registry_store(),
            audit_client=MlflowClient(tracking_uri=backend, registry_uri=backend),
            artifact_destination=os.environ.get(ARTIFACTS_DESTINATION_ENV_VAR, ""),
            settings=settings,
        )
    return _state


def _govern_flask_route(settings: GovernanceSettings) -> Response | None:
    if request.url_rule is None or (request.method in READS and request.endpoint != "_graphql"):
        return None
    rule = rule_for(request.endpoint or "")
    if rule is None:
        return None
    # Only the user MLflow's auth verified: a name merely claimed in a header grants nothing.
    user = g.get("mlflow_authenticated_user") or ""
    body = request.get_json(silent=True) if request.is_json else None
    params = {**request.args.to_dict(), **(request.view_args or {}), **(body or {})}
    refusal = _refusal(rule, user, params, settings)
    return _deny(refusal) if refusal else None


def _native_route_guard(app, settings: GovernanceSettings):
    """A middleware governing the routes FastAPI serves without Flask (outermost, so it
    authenticates the caller itself)."""

    async def guard(request: Request, call_next):
        if request.method in READS:
            return await call_next(request)
        matched = _native_route(app, request.scope)
        if matched is None:  # Flask's route: its hook governs it
            return await call_next(request)
        name, path_params = matched
        rule = rule_for(name)
        if rule is None:
            return await call_next(request)
        user = _authenticate_fastapi_request(request)
        if user is None:
            return JSONResponse(
                {"error_code": "UNAUTHENTICATED", "message": "credentials are required"}, 401
            )
        params = {**dict(request.query_params), **path_params}
        refusal = _refusal(rule, user.username, params, settings)
        if refusal:
            return JSONResponse({"error_code": "PERMISSION_DENIED", "message": refusal}, 403)
        return await call_next(request)

    return guard


def _native_route(app, scope) -> tuple[str, dict] | None:
    """The name and path parameters of the FastAPI route serving `scope`, if not Flask's."""
    for route in app.routes:
        if isinstance(route, Mount):
            return None
        match = getattr(route, "_match", None)  # an included router: find its inner route
        found = match(scope) if match else route.matches(scope)
        if found[0] == Match.FULL:
            child = found[1]
            inner = child.get("route", route)
            return getattr(inner, "name", ""), child.get("path_params", {})
    return None


def _refusal(rule, user: str, params: dict, settings: GovernanceSettings) -> str:
    call = Call(user, settings.is_service_account(user), params, _server(settings))
    try:
        rule(call)
    except Refusal as refusal:
        return str(refusal)
    return ""


def _deny(message: str) -> Response:
    return Response(
        json.dumps({"error_code": "PERMISSION_DENIED", "message": message}),
        status=403,
        mimetype="application/json",
    )


def writing_routes(served) -> dict[str, str]:
    """Every route of the built server that can write state, by view or route name, with one
    of its paths: the Flask URL map (non-read methods, and GraphQL) and the routes FastAPI
    serves itself."""
    flask_app = mlflow_app
    found = {
        rule.endpoint: rule.rule
        for rule in flask_app.url_map.iter_rules()
        if (rule.methods or set()) - READS or rule.endpoint == "_graphql"
    }
    for route in getattr(served, "routes", []):
        if isinstance(route, Mount):
            continue
        router = getattr(route, "original_router", None)
        for inner in router.routes if router else [route]:
            if set(getattr(inner, "methods", None) or ()) - READS:
                found.setdefault(inner.name, inner.path)
    return found


def ungoverned(routes: dict[str, str]) -> dict[str, str]:
    """The writing routes that no rule governs and no allow-list entry explains."""
    return {name: path for name, path in routes.items() if name not in RULES | ALLOWED}
