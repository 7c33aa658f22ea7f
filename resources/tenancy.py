"""The tenant context: the namespace every model, feature and event of a use case lives in."""

import re

from dagster import ConfigurableResource, EnvVar
from pydantic import Field, field_validator

from facilflow_assets.events.envelope import EventType, LifecycleEvent, lifecycle_event

_SLUG = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class TenantResource(ConfigurableResource):
    """A tenant id and a use-case name, and the names they give to everything downstream."""

    tenant: str = Field(description="Tenant id: lowercase letters, digits and underscores.")
    use_case: str = Field(description="Use-case name within the tenant, same alphabet.")

    @field_validator("tenant", "use_case", mode="before")
    @classmethod
    def _must_be_slug(cls, value: str, info) -> str:
        # An EnvVar is checked once Dagster resolves it, when the resource is built for a run.
        if not isinstance(value, EnvVar) and not _SLUG.match(value):
            raise ValueError(
                f"{info.field_name}={value!r} must start with a lowercase letter and hold only "
                "lowercase letters, digits and underscores (at most 63 characters)"
            )
        return value

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
