"""The code location: every asset, check, job, sensor and resource of FacilFlow."""

import dagster as dg

from facilflow_assets.environment import get_environment
from facilflow_assets.evaluation.assets import clears_thresholds, evaluation_report
from facilflow_assets.features.assets import feature_table_assets
from facilflow_assets.features.feast_assets import feast_assets
from facilflow_assets.monitoring.assets import feature_drift, prediction_drift
from facilflow_assets.monitoring.health_asset import serving_health
from facilflow_assets.raw.assets import raw_assets
from facilflow_assets.registry.assets import audit_trail_confirms_stages, registered_model_version
from facilflow_assets.resource_map import build_resources
from facilflow_assets.serving.batch import batch_predictions
from facilflow_assets.serving.deployment import prediction_endpoint
from facilflow_assets.training.assets import trained_model
from facilflow_assets.warehouse import warehouse_models
from jobs import all_jobs
from sensors import all_schedules, all_sensors

all_assets = [
    *raw_assets,
    warehouse_models,
    *feature_table_assets,
    *feast_assets,
    trained_model,
    evaluation_report,
    registered_model_version,
    prediction_endpoint,
    batch_predictions,
    feature_drift,
    prediction_drift,
    serving_health,
]
all_asset_checks = [clears_thresholds, audit_trail_confirms_stages]

defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_asset_checks,
    jobs=all_jobs,
    sensors=all_sensors,
    schedules=all_schedules,
    resources=build_resources(get_environment()),
)
