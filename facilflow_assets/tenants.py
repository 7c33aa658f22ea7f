"""The tenants a deployment serves, read from `tenants.yaml`."""

from pathlib import Path

from pydantic import Field, RootModel, field_validator

from facilflow_assets.feature_spec import StrictModel, load_spec_file
from facilflow_assets.scope import check_slug

TENANTS_FILE = Path(__file__).with_name("tenants.yaml")
DEFAULT_TENANT = "demo"
SHARED_LOCATION = "shared"  # the warehouse's code location, which no tenant may be called


class TenantError(ValueError):
    """A tenant that tenants.yaml does not declare."""


class TenantSpec(StrictModel):
    description: str
    use_cases: list[str] = Field(min_length=1, description="Use-case files the tenant runs.")
    approvers: list[str] = Field(
        default_factory=list, description="Local approvers of the tenant's promotions."
    )

    @field_validator("use_cases")
    @classmethod
    def _named_once(cls, names: list[str]) -> list[str]:
        for name in names:
            check_slug(name, "use case")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"'{repeated[0]}' is listed more than once")
        return names


class Tenants(RootModel[dict[str, TenantSpec]]):
    @field_validator("root")
    @classmethod
    def _slugs(cls, tenants: dict[str, TenantSpec]) -> dict[str, TenantSpec]:
        if not tenants:
            raise ValueError("no tenant is declared")
        for name in tenants:
            check_slug(name, "tenant")
            if name == SHARED_LOCATION:
                raise ValueError(f"'{SHARED_LOCATION}' is the warehouse's location, not a tenant")
        # Feast names a project <tenant>_<use case>: two pairs must not make the same name.
        projects: dict[str, str] = {}
        for name, spec in tenants.items():
            for use_case in spec.use_cases:
                project, pair = f"{name}_{use_case}", f"tenant '{name}', use case '{use_case}'"
                if project in projects:
                    raise ValueError(
                        f"{pair} and {projects[project]} would share the Feast project "
                        f"'{project}'; rename one"
                    )
                projects[project] = pair
        return tenants


def load_tenants(path: Path = TENANTS_FILE) -> dict[str, TenantSpec]:
    """Every tenant of the file; an error names the file and the place."""
    return load_spec_file(path, Tenants).root


def tenant_spec(name: str, path: Path = TENANTS_FILE) -> TenantSpec:
    tenants = load_tenants(path)
    if name not in tenants:
        raise TenantError(f"{path}: no tenant '{name}'; it declares {', '.join(tenants)}")
    return tenants[name]
