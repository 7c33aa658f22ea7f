"""The demo's monitoring: drift of a day the model learned from and of a day it never saw,
and the endpoint's health after the demo's requests."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from facilflow_assets.asset_keys import UseCaseKeys
from facilflow_assets.demo.plan import DemoPlan
from facilflow_assets.metadata import materialized_metadata, metadata_number
from facilflow_assets.scope import ModelScope

if TYPE_CHECKING:
    from facilflow_assets.demo.run import Lifecycle


class DayDrift(TypedDict):
    """One day's drift: its checks' outcomes, then the drift assets' figures."""

    checks: dict[str, bool]
    feature_drift: object
    drift_share: float
    drifted_features: object
    prediction_drift: object
    prediction_mean_shift_std: float
    report: object


class Monitoring(TypedDict):
    drift: dict[str, DayDrift]  # by day
    serving_health: dict[str, object]  # the endpoint's request counts and its SLA


def _drift_of(lifecycle: Lifecycle, scope: ModelScope, day: str, scored: bool) -> DayDrift:
    keys = UseCaseKeys(scope)
    drift = [keys.feature_drift, keys.prediction_drift]
    result = lifecycle.run(
        scope.definition_name("monitoring_job"),
        partition_key=day,
        asset_selection=drift if scored else [keys.batch_predictions, *drift],
    )
    features = materialized_metadata(result, keys.feature_drift.to_user_string())
    predictions = materialized_metadata(result, keys.prediction_drift.to_user_string())
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    return {
        "checks": checks,
        "feature_drift": features["drifted"],
        "drift_share": round(metadata_number(features, "drift_share"), 3),
        "drifted_features": features["drifted_columns"],
        "prediction_drift": predictions["drifted"],
        "prediction_mean_shift_std": round(metadata_number(predictions, "mean_shift_std"), 2),
        "report": features["report"],
    }


def monitor(lifecycle: Lifecycle, scope: ModelScope, plan: DemoPlan) -> Monitoring:
    """Drift of the batch day (scored by the serving walkthrough already) and of the unseen
    day, then the endpoint's health."""
    keys = UseCaseKeys(scope)
    seen, unseen = plan.batch_day.isoformat(), plan.unseen_day.isoformat()
    drift = {
        seen: _drift_of(lifecycle, scope, seen, scored=True),
        unseen: _drift_of(lifecycle, scope, unseen, scored=False),
    }
    health = materialized_metadata(
        lifecycle.run(scope.definition_name("serving_health_job")),
        keys.serving_health.to_user_string(),
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
