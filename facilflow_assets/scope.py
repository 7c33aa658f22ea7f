"""A model's scope: one tenant's use case, and the names it gives to everything it owns.

Every asset key, MLflow experiment and registered model, Feast project, job, sensor and
lifecycle event of a use case is named from its scope, so two tenants (or two use cases of
one tenant) never share one.
"""

import re
from dataclasses import dataclass

import dagster as dg

from facilflow_assets.events.envelope import EventType, LifecycleEvent, lifecycle_event

SLUG = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TENANT_TAG = "facilflow/tenant"
USE_CASE_TAG = "facilflow/use_case"


class ScopeError(ValueError):
    """A tenant or use-case name that cannot name MLflow, Feast and Dagster objects."""


def check_slug(value: str, field: str) -> str:
    if not isinstance(value, str) or not SLUG.match(value):
        raise ScopeError(
            f"{field}={value!r} must start with a lowercase letter and hold only lowercase "
            "letters, digits and underscores (at most 63 characters)"
        )
    return value


@dataclass(frozen=True)
class ModelScope:
    """A tenant id and a use-case name."""

    tenant: str
    use_case: str

    def __post_init__(self) -> None:
        check_slug(self.tenant, "tenant")
        check_slug(self.use_case, "use_case")

    @property
    def key_prefix(self) -> list[str]:
        return [self.tenant, self.use_case]

    def key(self, group: str, name: str) -> dg.AssetKey:
        """The asset key of the scope's asset `name` of the stage `group`."""
        return dg.AssetKey([*self.key_prefix, group, name])

    def definition_name(self, name: str) -> str:
        """A job, sensor or schedule name, unique within the tenant's code location."""
        return f"{self.use_case}_{name}"

    @property
    def run_tags(self) -> dict[str, str]:
        """Tags of every run on the scope's assets; the run queue limits runs per tenant."""
        return {TENANT_TAG: self.tenant, USE_CASE_TAG: self.use_case}

    @property
    def experiment_name(self) -> str:
        """The MLflow experiment of the use case."""
        return f"/{self.tenant}/{self.use_case}"

    @property
    def audit_experiment_name(self) -> str:
        """The MLflow experiment holding the audit trail of the use case's model."""
        return f"{self.experiment_name}/audit"

    @property
    def registered_model_name(self) -> str:
        """The MLflow registered model of the use case."""
        return f"{self.tenant}.{self.use_case}"

    @property
    def feast_project(self) -> str:
        """The Feast project (Feast allows only letters, digits and underscores)."""
        return f"{self.tenant}_{self.use_case}"

    def event_fields(self) -> dict[str, str]:
        """The fields every lifecycle event of this use case carries."""
        return {"tenant": self.tenant, "use_case": self.use_case}

    def event(
        self,
        event_type: EventType,
        payload,
        *,
        version: str | None = None,
        dagster_run_id: str | None = None,
        once_per: str | None = None,
    ) -> LifecycleEvent:
        """A lifecycle event about the use case's registered model (see `lifecycle_event`)."""
        return lifecycle_event(
            event_type,
            payload,
            **self.event_fields(),
            model=self.registered_model_name,
            version=version,
            dagster_run_id=dagster_run_id,
            once_per=once_per,
        )
