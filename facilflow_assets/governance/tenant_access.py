"""Read isolation between tenants on a shared MLflow server: a tenant's experiments, runs,
registered models and artifacts are readable by its own users only.

MLflow's basic auth decides every read and write by permission; with `default_permission =
NO_PERMISSIONS` nobody reads what they were not granted. The governance app grants through
MLflow roles, one set per tenant:
- `facilflow-<tenant>-users` (the tenant's `tenant_users` and approvers): READ on its
  experiments (each use case's and its audit experiment), so on their runs, logged models
  and artifacts, and EDIT on its registered models (requests and decisions are version tags,
  which the governance rules restrict further);
- `facilflow-<tenant>-service` (its service accounts): MANAGE on both;
- `facilflow-model-readers` (`model_readers`, the endpoint's replicas): READ on every
  tenant's experiments and registered models.
A tenant's objects are those named by it: experiments `/<tenant>/...`, models
`<tenant>.<use case>`. Experiment artifacts must live under the experiment's id
(`mlflow-artifacts:/<id>`, the server's default) for MLflow to check them per experiment.

The app grants an object's permissions when it is created or renamed, gives a user their
roles at their first request, and brings every grant and role membership in line with the
settings when it starts (`sync`), so a user removed from `tenant_users` loses access at the
next restart.
"""

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow.server.auth.entities import Role
from mlflow.server.auth.permissions import RESOURCE_TYPE_EXPERIMENT, RESOURCE_TYPE_REGISTERED_MODEL
from mlflow.utils.workspace_utils import DEFAULT_WORKSPACE_NAME

from facilflow_assets.approvers import every_name, named_tenants, names_for
from facilflow_assets.scope import SLUG

log = logging.getLogger(__name__)

TENANT_MODEL_PATTERN = r"^[a-z][a-z0-9_]{0,62}\.[a-z][a-z0-9_]{0,62}$"
ROLE_PREFIX = "facilflow-"
MODEL_READERS_ROLE = f"{ROLE_PREFIX}model-readers"
EXPERIMENT, MODEL = RESOURCE_TYPE_EXPERIMENT, RESOURCE_TYPE_REGISTERED_MODEL
READ, EDIT, MANAGE = "READ", "EDIT", "MANAGE"
ALREADY_EXISTS, DOES_NOT_EXIST = "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"
PAGE = 1000
ROLE_DESCRIPTION = "Kept by FacilFlow's governance app from its [facilflow] settings"


@dataclass(frozen=True)
class GovernanceSettings:
    """The server's settings, each as given (the forms are in facilflow_assets/approvers.py)."""

    service_accounts: str  # one list (every tenant's), or one per tenant
    approvers: str  # one list, or one per tenant
    tenant_users: str = ""  # one per tenant: who reads the tenant's objects
    model_readers: str = ""  # one list: who loads every tenant's registered models

    def is_service_account(self, user: str) -> bool:
        return user in every_name(self.service_accounts)

    def tenants(self) -> set[str]:
        """The tenants the settings name."""
        return set().union(
            *(named_tenants(s) for s in (self.service_accounts, self.approvers, self.tenant_users))
        )

    def users_of(self, tenant: str) -> set[str]:
        """Who works in `tenant`: its users and its approvers."""
        return {*names_for(self.tenant_users, tenant), *names_for(self.approvers, tenant)}

    def service_accounts_of(self, tenant: str) -> set[str]:
        return set(names_for(self.service_accounts, tenant))

    def members_of(self, tenant: str) -> set[str]:
        return self.users_of(tenant) | self.service_accounts_of(tenant)


def tenant_of_experiment(name: str) -> str | None:
    """The tenant of an experiment named `/<tenant>/...`."""
    parts = (name or "").split("/")
    if len(parts) >= 3 and parts[0] == "" and SLUG.match(parts[1]) and parts[2]:
        return parts[1]
    return None


def tenant_of_model(name: str) -> str | None:
    """The tenant of a registered model named `<tenant>.<use case>`."""
    return name.split(".", 1)[0] if re.match(TENANT_MODEL_PATTERN, name or "") else None


class TenantAccess:
    """The tenants' roles and grants in MLflow's auth store (`mlflow.server.auth.store`)."""

    def __init__(self, store, settings: GovernanceSettings):
        self.store = store
        self.settings = settings
        self._members_checked: set[str] = set()
        self._roles: dict[str, Role] = {}
        # Each role's grants as this process knows them: (kind, pattern) -> (id, permission).
        self._grants: dict[int, dict[tuple[str, str], tuple[int, str]]] = {}

    # --- objects -------------------------------------------------------------------------

    def experiment_created(self, experiment_id: str, name: str) -> None:
        tenant = tenant_of_experiment(name)
        if tenant:
            self._grant_to_tenant(tenant, EXPERIMENT, str(experiment_id), users=READ)

    def model_created(self, name: str) -> None:
        tenant = tenant_of_model(name)
        if tenant:
            self._grant_to_tenant(tenant, MODEL, name, users=EDIT)

    def _grant_to_tenant(self, tenant: str, kind: str, pattern: str, users: str) -> None:
        self._grant(self._role(f"{ROLE_PREFIX}{tenant}-users"), kind, pattern, users)
        self._grant(self._role(f"{ROLE_PREFIX}{tenant}-service"), kind, pattern, MANAGE)
        self._grant(self._role(MODEL_READERS_ROLE), kind, pattern, READ)

    # --- users ---------------------------------------------------------------------------

    def member_seen(self, username: str) -> None:
        """Give a user their roles, once per process: at their first request, before MLflow
        authorises it (the user may have been created after the server started)."""
        if username in self._members_checked or not self.store.has_user(username):
            return
        self._assign(username)
        self._members_checked.add(username)

    def _expected_roles(self, username: str) -> set[str]:
        settings = self.settings
        expected = {MODEL_READERS_ROLE} if username in every_name(settings.model_readers) else set()
        for tenant in self._known_tenants():
            if username in settings.users_of(tenant):
                expected.add(f"{ROLE_PREFIX}{tenant}-users")
            if username in settings.service_accounts_of(tenant):
                expected.add(f"{ROLE_PREFIX}{tenant}-service")
        return expected

    def _assign(self, username: str) -> None:
        user = self.store.get_user(username)
        held = {role.name for role in self.store.list_user_roles(user.id)}
        expected = self._expected_roles(username)
        for name in expected - held:
            try:
                self.store.assign_role_to_user(user.id, self._role(name).id)
            except MlflowException as error:
                if error.error_code != ALREADY_EXISTS:
                    raise
        for role in self.store.list_user_roles(user.id):
            if role.name.startswith(ROLE_PREFIX) and role.name not in expected:
                self.store.unassign_role_from_user(user.id, role.id)

    def _known_tenants(self) -> set[str]:
        """The tenants named in the settings or owning a role already."""
        roles = self.store.list_roles([DEFAULT_WORKSPACE_NAME])
        owning = {
            r.name.removeprefix(ROLE_PREFIX).rpartition("-")[0]
            for r in roles
            if r.name.startswith(ROLE_PREFIX) and r.name != MODEL_READERS_ROLE
        }
        return self.settings.tenants() | owning

    # --- everything at once --------------------------------------------------------------

    def sync(self, tracking, registry) -> None:
        """Grant every tenant object's permissions and give every user exactly their roles."""
        for experiment in _experiments(tracking):
            self.experiment_created(experiment.experiment_id, experiment.name)
        for model in _models(registry):
            self.model_created(model.name)
        for user in self.store.list_users():
            self._assign(user.username)
            self._members_checked.add(user.username)

    # --- the store -----------------------------------------------------------------------

    def _role(self, name: str) -> Role:
        if name not in self._roles:
            self._roles[name] = self._existing_or_new_role(name)
        return self._roles[name]

    def _existing_or_new_role(self, name: str) -> Role:
        try:
            return self.store.get_role_by_name(DEFAULT_WORKSPACE_NAME, name)
        except MlflowException as error:
            if error.error_code != DOES_NOT_EXIST:
                raise
        try:
            return self.store.create_role(name, DEFAULT_WORKSPACE_NAME, ROLE_DESCRIPTION)
        except MlflowException as error:  # created by another worker meanwhile
            if error.error_code != ALREADY_EXISTS:
                raise
            return self.store.get_role_by_name(DEFAULT_WORKSPACE_NAME, name)

    def _grant(self, role: Role, kind: str, pattern: str, permission: str) -> None:
        if role.id not in self._grants:
            self._grants[role.id] = {
                (g.resource_type, g.resource_pattern): (g.id, g.permission)
                for g in self.store.list_role_permissions(role.id)
            }
        known = self._grants[role.id]
        if (kind, pattern) in known:
            grant_id, held = known[(kind, pattern)]
            if held != permission:
                self.store.update_role_permission(grant_id, permission)
                known[(kind, pattern)] = (grant_id, permission)
            return
        try:
            granted = self.store.add_role_permission(role.id, kind, pattern, permission)
        except MlflowException as error:  # granted by another worker meanwhile
            if error.error_code != ALREADY_EXISTS:
                raise
            return
        known[(kind, pattern)] = (granted.id, permission)


def _experiments(tracking) -> Iterator:
    token = None
    while True:
        page = tracking.search_experiments(
            view_type=ViewType.ALL, max_results=PAGE, page_token=token
        )
        yield from page
        token = page.token
        if not token:
            return


def _models(registry) -> Iterator:
    token = None
    while True:
        page = registry.search_registered_models(max_results=PAGE, page_token=token)
        yield from page
        token = page.token
        if not token:
            return
