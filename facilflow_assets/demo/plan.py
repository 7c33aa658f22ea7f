"""The demo's plan: which use case it walks through every stage, as whom (its days are
the use case file's `sample_days`)."""

from pathlib import Path

from pydantic import Field

from facilflow_assets.feature_spec import StrictModel, load_spec_file

PLAN_FILE = Path(__file__).with_name("plan.yaml")


class DemoPlan(StrictModel):
    walkthrough: str = Field(description="The use case taken through every stage.")
    requester: str
    approver: str
    challenger_share: float = Field(ge=0, le=1)
    burst: int = Field(ge=1)
    training: dict[str, object] = Field(description="TrainingConfig of the walkthrough's model.")
    other_training: dict[str, object] = Field(description="TrainingConfig of the others.")
    challenger_training: dict[str, object]
    challenger_min_lift: float = Field(
        description="Lowest relative gain of the challenger over Production on the task's "
        "metric (its evaluation's min_auc_lift, or min_rmse_lift for a regression)."
    )


def load_plan(path: Path = PLAN_FILE) -> DemoPlan:
    return load_spec_file(path, DemoPlan)
