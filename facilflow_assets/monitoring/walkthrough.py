"""The demo's monitoring: drift of a summer day the model learned from and of a winter day
it never saw, and the endpoint's health after the demo's requests."""

import dagster as dg

from facilflow_assets.metadata import materialized_metadata
from facilflow_assets.monitoring.assets import feature_drift, prediction_drift
from facilflow_assets.monitoring.health_asset import serving_health
from facilflow_assets.serving.batch import batch_predictions
from facilflow_assets.serving.walkthrough import BATCH_DAY

SUMMER_DAY = BATCH_DAY  # scored by the serving walkthrough already
WINTER_DAY = "2013-01-15"  # before the training period: January weather is new to the model


def _drift_of(day: str, resources: dict, instance: dg.DagsterInstance) -> dict[str, object]:
    unscored = [batch_predictions] if day != SUMMER_DAY else []
    result = dg.materialize(
        [*unscored, feature_drift, prediction_drift],
        partition_key=day,
        resources=resources,
        instance=instance,
    )
    features = materialized_metadata(result, "monitoring/feature_drift")
    predictions = materialized_metadata(result, "monitoring/prediction_drift")
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    return {
        "checks": checks,
        "feature_drift": features["drifted"],
        "drift_share": round(features["drift_share"], 3),
        "drifted_features": features["drifted_columns"],
        "prediction_drift": predictions["drifted"],
        "prediction_mean_shift_std": round(predictions["mean_shift_std"], 2),
        "report": features["report"],
    }


def monitor(resources: dict, instance: dg.DagsterInstance) -> dict[str, object]:
    drift = {day: _drift_of(day, resources, instance) for day in (SUMMER_DAY, WINTER_DAY)}
    health = materialized_metadata(
        dg.materialize([serving_health], resources=resources, instance=instance),
        "monitoring/serving_health",
    )
    return {
        "drift": drift,
        "serving_health": {
            "requests": health["requests"],
            "invalid_requests": health["invalid_requests"],
            "breached_versions": health["breached_versions"],
            "p95_sla_ms": health["p95_sla_ms"],
        },
    }
