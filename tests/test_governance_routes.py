"""Route coverage of the governance server app: every route the MLflow server in the lock
exposes that can write state is governed by a rule or explained on the allow-list, so a
release that adds a route fails here until someone decides how it is governed.

The server app is built in a process of its own: building it registers routes and hooks
on MLflow's module-level Flask app."""

import json
import os
import subprocess
import sys

import pytest

from facilflow_assets.environment import PROJECT_ROOT
from facilflow_assets.governance.server_rules import ALLOWED, RULES

INVENTORY = """
import json, sys
from flask import Flask
from mlflow.server import app
from facilflow_assets.governance.server_app import create_app, ungoverned, writing_routes
if "--with-unguarded-route" in sys.argv:  # what a new MLflow release could add
    app.add_url_rule("/api/2.0/mlflow/registered-models/force-alias", "_force_alias",
                     lambda: "", methods=["POST"])
served = create_app(app)
routes = writing_routes(served)
from mlflow.server.graphql.graphql_schema_extensions import schema
mutations = sorted(schema.graphql_schema.mutation_type.fields)
print(json.dumps({"routes": routes, "ungoverned": ungoverned(routes), "mutations": mutations}))
"""
AUTH_INI = """[mlflow]
default_permission = READ
database_uri = sqlite:///{db}
admin_username = admin
admin_password = inventory-admin-1234
authorization_function = mlflow.server.auth:authenticate_request_basic_auth

[facilflow]
service_accounts = facilflow
"""
GRAPHQL_SEARCHES = ["mlflowSearchDatasets", "mlflowSearchRuns", "testMutation"]


def _inventory(tmp_path, *flags: str) -> dict:
    ini = tmp_path / "auth.ini"
    ini.write_text(AUTH_INI.format(db=tmp_path / "auth.db"))
    env = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "inventory",
        "_MLFLOW_SERVER_FILE_STORE": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "_MLFLOW_SERVER_ARTIFACT_ROOT": (tmp_path / "artifacts").as_uri(),
        "_MLFLOW_SGI_NAME": "uvicorn",  # as `mlflow server` runs it: FastAPI around Flask
        "PYTHONWARNINGS": "ignore",
    }
    result = subprocess.run(
        [sys.executable, "-c", INVENTORY, *flags],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    return _inventory(tmp_path_factory.mktemp("routes"))


def test_every_state_writing_route_is_governed_or_explained(inventory):
    routes = inventory["routes"]
    assert len(routes) > 150  # Flask's and FastAPI's, across every prefix and API version
    for native in ("upload_artifact", "submit_job", "export_traces"):  # FastAPI's own
        assert native in routes
    assert inventory["ungoverned"] == {}
    # No entry outlives its route: what is listed is what this MLflow serves.
    assert set(RULES) | set(ALLOWED) == set(routes)


def test_graphql_mutations_are_searches_only(inventory):
    assert inventory["mutations"] == GRAPHQL_SEARCHES


def test_the_guard_fails_on_a_route_nobody_governs(tmp_path):
    with_new_route = _inventory(tmp_path, "--with-unguarded-route")
    assert with_new_route["ungoverned"] == {
        "_force_alias": "/api/2.0/mlflow/registered-models/force-alias"
    }
