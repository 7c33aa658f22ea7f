"""Jobs: named selections of the lifecycle that people and sensors launch."""

import dagster as dg
from dagster_k8s import k8s_job_executor
from dagster_mlflow import end_mlflow_on_run_finished

from facilflow_assets.environment import steps_in_own_pods
from facilflow_assets.monitoring.assets import FEATURE_DRIFT_KEY, PREDICTION_DRIFT_KEY
from facilflow_assets.monitoring.health_asset import SERVING_HEALTH_KEY
from facilflow_assets.serving.batch import BATCH_PREDICTIONS_KEY
from facilflow_assets.serving.deployment import ENDPOINT_KEY
from jobs.promotion import promotion_job

# On Kubernetes, jobs whose steps differ in size or can run side by side give each step a
# pod of its own (dagster-k8s' k8s_job_executor); the others run in their run's pod.
FAN_OUT = {"executor_def": k8s_job_executor} if steps_in_own_pods() else {}


def _pod(cpu: str, memory: str) -> dict[str, dict]:
    """A run's (or step's) container resources on Kubernetes (dagster-k8s/config)."""
    size = {"cpu": cpu, "memory": memory}
    return {"dagster-k8s/config": {"container_config": {"resources": {
        "requests": size, "limits": size}}}}  # fmt: skip


warehouse_job = dg.define_asset_job(
    "warehouse_job",
    selection=dg.AssetSelection.groups("raw", "dbt"),
    tags=_pod("2", "8Gi"),
    **FAN_OUT,
    description="Reload the raw flight data and rebuild the dbt warehouse with its tests.",
)

training_job = dg.define_asset_job(
    "training_job",
    selection=dg.AssetSelection.groups("training", "evaluation", "registry"),
    # dagster-mlflow's hook ends the MLflow runs a failed step leaves open, as FAILED.
    hooks={end_mlflow_on_run_finished},
    # One training at a time per tenant (the Helm values' run queue limits this tag).
    tags={**_pod("2", "16Gi"), "facilflow/stage": "training"},
    **FAN_OUT,
    description="Tune and train on the current training set, evaluate against the baseline, "
    "and register and stage the candidate if it clears the thresholds.",
)

candidate_job = dg.define_asset_job(
    "candidate_job",
    selection=dg.AssetSelection.groups("evaluation", "registry"),
    description="Evaluate a given training run's model (config candidate_run_id) and register "
    "it in Staging if it clears the thresholds; launched by promote_tag_sensor.",
)

deployment_job = dg.define_asset_job(
    "deployment_job",
    selection=dg.AssetSelection.assets(ENDPOINT_KEY),
    description="Deploy the Production version (and the configured challenger) to the "
    "endpoint; launched by redeploy_sensor when the Production version changes.",
)

monitoring_job = dg.define_asset_job(
    "monitoring_job",
    selection=dg.AssetSelection.assets(
        BATCH_PREDICTIONS_KEY, FEATURE_DRIFT_KEY, PREDICTION_DRIFT_KEY
    ),
    tags=_pod("1", "4Gi"),
    **FAN_OUT,
    description="Score a day's flights with the Production version, then measure that day's "
    "feature and prediction drift against the version's reference.",
)

serving_health_job = dg.define_asset_job(
    "serving_health_job",
    selection=dg.AssetSelection.assets(SERVING_HEALTH_KEY),
    description="Judge the endpoint's recent requests per version against the SLA and the "
    "error-rate threshold; alert on a breach.",
)

all_jobs = [
    warehouse_job,
    training_job,
    candidate_job,
    promotion_job,
    deployment_job,
    monitoring_job,
    serving_health_job,
]
