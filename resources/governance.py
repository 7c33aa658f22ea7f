"""Who may approve transitions of the use case's model to Production."""

from dagster import ConfigurableResource
from pydantic import Field

from facilflow_assets.approvers import approvers_of


class GovernanceResource(ConfigurableResource):
    """The designated approvers of the tenant's registered model."""

    approvers: str = Field(
        description="Comma-separated user names of the approvers, or one such list per "
        "tenant ('acme=carol,dave;globex=erin'), the form the governance server app reads."
    )

    def approvers_of(self, model: str) -> list[str]:
        return approvers_of(self.approvers, model)
