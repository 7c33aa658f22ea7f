"""Who may approve transitions of the use case's model to Production."""

from dagster import ConfigurableResource
from pydantic import Field


class GovernanceResource(ConfigurableResource):
    """The designated approvers of the tenant's registered model."""

    approvers: str = Field(description="Comma-separated user names of the approvers.")

    @property
    def approver_list(self) -> list[str]:
        return [name.strip() for name in self.approvers.split(",") if name.strip()]
