"""When drift or degraded quality starts a retraining of the model: the policy
drift_retraining_sensor applies."""

from dagster import ConfigurableResource
from pydantic import Field, model_validator

# Feature or prediction drift; quality: the realized quality worse than the holdout's.
KINDS = ("feature", "prediction", "quality")


class RetrainingPolicyResource(ConfigurableResource):
    """Retrain once the Production version has been flagged on `drifted_days` of its latest
    `within_days` monitored days, by any of the kinds in `on`."""

    on: str = Field(
        default="feature,prediction,quality",
        description="Comma-separated kinds that count (feature, prediction drift; quality: "
        "realized quality worse than the holdout's); empty: never.",
    )
    drifted_days: int = Field(
        default=2, ge=1, description="Flagged days (of any one kind) that start a retraining."
    )
    within_days: int = Field(default=7, ge=1, description="Latest monitored days looked at.")

    @model_validator(mode="after")
    def _days_fit(self) -> "RetrainingPolicyResource":
        if self.drifted_days > self.within_days:
            raise ValueError(
                f"retraining policy: drifted_days ({self.drifted_days}) exceeds "
                f"within_days ({self.within_days})"
            )
        return self

    @property
    def kinds(self) -> list[str]:
        """The kinds that count; checked here, where an EnvVar has its value."""
        kinds = [kind.strip() for kind in self.on.split(",") if kind.strip()]
        unknown = [kind for kind in kinds if kind not in KINDS]
        if unknown:
            raise ValueError(
                f"retraining policy 'on': unknown kind(s) {', '.join(unknown)}; "
                f"use {', '.join(KINDS)}"
            )
        return kinds
