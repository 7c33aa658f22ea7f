"""The governance app's provisioning of tenant read isolation, on MLflow's own stores (auth,
tracking and registry, sqlite): who holds which permission on which tenant's objects after
a start (`sync`), after a change of the settings, and for a user created later. That MLflow
enforces the grants is shown on a real server in test_governance_server.py."""

import shutil

import pytest
from mlflow.server.auth.permissions import GrantLoadKey
from mlflow.server.auth.requirements import fold_grants_for_key
from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore as AuthStore
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore
from mlflow.utils.workspace_utils import DEFAULT_WORKSPACE_NAME

from facilflow_assets.governance.tenant_access import (
    EXPERIMENT,
    MODEL,
    GovernanceSettings,
    TenantAccess,
    tenant_of_experiment,
    tenant_of_model,
)

SETTINGS = GovernanceSettings(
    service_accounts="acme=facilflow-acme;globex=facilflow-globex",
    approvers="acme=carol;globex=erin",
    tenant_users="acme=alice,bob;globex=frank",
    model_readers="facilflow-serving",
)
USERS = ["alice", "bob", "carol", "erin", "frank", "facilflow-acme", "facilflow-serving", "zed"]
EXPERIMENTS = ["/acme/flight_delay", "/acme/flight_delay/audit", "/globex/churn", "scratch"]
MODELS = ["acme.flight_delay", "globex.churn", "scratch_model"]


@pytest.fixture(scope="module")
def databases(tmp_path_factory):
    """The databases, made once (MLflow's migrations take seconds): users in the auth store,
    each tenant's experiments and models and some that are no tenant's in the other."""
    root = tmp_path_factory.mktemp("stores")
    tracking = TrackingStore(f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri())
    registry = RegistryStore(f"sqlite:///{root / 'mlflow.db'}")
    auth = AuthStore()
    auth.init_db(f"sqlite:///{root / 'auth.db'}")
    for user in USERS:
        auth.create_user(user, f"{user}-password")
    ids = {name: tracking.create_experiment(name) for name in EXPERIMENTS}
    for name in MODELS:
        registry.create_registered_model(name)
    for store in (tracking, registry, auth):
        store.engine.dispose()
    return root, ids


@pytest.fixture
def stores(databases, tmp_path):
    """A copy of the databases of the test's own, opened as the server opens them."""
    root, ids = databases
    for name in ("mlflow.db", "auth.db"):
        shutil.copy(root / name, tmp_path / name)
    database = f"sqlite:///{tmp_path / 'mlflow.db'}"
    auth = AuthStore()
    auth.init_db(f"sqlite:///{tmp_path / 'auth.db'}")
    return auth, TrackingStore(database, str(tmp_path)), RegistryStore(database), ids


def _permission(auth: AuthStore, user: str, kind: str, key: str) -> str | None:
    """What the user's roles grant on one object, folded as MLflow's authorisation does."""
    grants = auth.list_grants(auth.get_user(user).id, DEFAULT_WORKSPACE_NAME, {kind})
    permission = fold_grants_for_key(grants, GrantLoadKey(kind, key))
    return permission.name if permission else None


def _held(auth: AuthStore, ids: dict[str, str]) -> dict[str, dict[str, str]]:
    """Every user's permissions, by object, where there is one."""
    objects = [(EXPERIMENT, name, ids[name]) for name in EXPERIMENTS]
    objects += [(MODEL, name, name) for name in MODELS]
    return {
        user: {
            name: found
            for kind, name, key in objects
            if (found := _permission(auth, user, kind, key))
        }
        for user in USERS
    }


ACME_USER = {
    "/acme/flight_delay": "READ",
    "/acme/flight_delay/audit": "READ",
    "acme.flight_delay": "EDIT",
}
GLOBEX_USER = {"/globex/churn": "READ", "globex.churn": "EDIT"}


def test_a_start_grants_each_tenants_objects_to_its_users_service_accounts_and_readers(stores):
    auth, tracking, registry, ids = stores
    TenantAccess(auth, SETTINGS).sync(tracking, registry)
    held = _held(auth, ids)
    assert held["alice"] == held["bob"] == held["carol"] == ACME_USER  # carol approves acme's
    assert held["frank"] == held["erin"] == GLOBEX_USER
    assert held["facilflow-acme"] == dict.fromkeys(ACME_USER, "MANAGE")
    assert held["facilflow-serving"] == {
        name: "READ" for name in [*EXPERIMENTS[:3], *MODELS[:2]]
    }  # every tenant's, and nothing that is no tenant's
    assert held["zed"] == {}
    # Again, as every worker of the server does at its start: nothing more is granted.
    roles = auth.list_roles([DEFAULT_WORKSPACE_NAME])
    grants = sum(len(auth.list_role_permissions(r.id)) for r in roles)
    TenantAccess(auth, SETTINGS).sync(tracking, registry)
    again = auth.list_roles([DEFAULT_WORKSPACE_NAME])
    assert sum(len(auth.list_role_permissions(r.id)) for r in again) == grants
    assert _held(auth, ids) == held


def test_a_user_removed_from_a_tenant_loses_its_objects_at_the_next_start(stores):
    auth, tracking, registry, ids = stores
    TenantAccess(auth, SETTINGS).sync(tracking, registry)
    moved = GovernanceSettings(
        service_accounts=SETTINGS.service_accounts,
        approvers=SETTINGS.approvers,
        tenant_users="acme=alice;globex=frank,bob",  # bob moves from acme to globex
        model_readers="",  # and the endpoint's account is retired
    )
    TenantAccess(auth, moved).sync(tracking, registry)
    held = _held(auth, ids)
    assert held["bob"] == GLOBEX_USER
    assert held["alice"] == ACME_USER
    assert held["facilflow-serving"] == {}


def test_objects_and_users_made_after_the_start_are_granted_as_they_appear(stores):
    auth, tracking, registry, ids = stores
    access = TenantAccess(auth, SETTINGS)
    access.sync(tracking, registry)
    new = tracking.create_experiment("/acme/churn")
    access.experiment_created(new, "/acme/churn")
    registry.create_registered_model("acme.churn")
    access.model_created("acme.churn")
    assert _permission(auth, "alice", EXPERIMENT, new) == "READ"
    assert _permission(auth, "alice", MODEL, "acme.churn") == "EDIT"
    assert _permission(auth, "frank", EXPERIMENT, new) is None
    # A user the settings name, created after the start, gets their roles at first sight.
    access = TenantAccess(
        auth, GovernanceSettings(**{**vars(SETTINGS), "tenant_users": "acme=yan"})
    )
    auth.create_user("yan", "yan-password")
    access.member_seen("yan")
    assert _permission(auth, "yan", MODEL, "acme.flight_delay") == "EDIT"
    access.member_seen("nobody")  # no such user: nothing to give, no error


@pytest.mark.parametrize(
    ("name", "tenant"),
    [
        ("/acme/flight_delay", "acme"),
        ("/acme/flight_delay/audit", "acme"),
        ("/Acme/x", None),
        ("/acme/", None),
        ("acme/x", None),
        ("Default", None),
    ],
)
def test_the_tenant_of_an_experiment_is_its_first_path_segment(name, tenant):
    assert tenant_of_experiment(name) == tenant


def test_the_tenant_of_a_model_is_its_name_before_the_dot():
    assert tenant_of_model("acme.flight_delay") == "acme"
    assert tenant_of_model("scratch_model") is None
    assert tenant_of_model("acme.flight.delay") is None
