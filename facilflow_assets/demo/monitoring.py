"""The demo's monitoring: drift and realized quality of a day the model learned from and of
a day it never saw, and the endpoint's health after the demo's requests."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from facilflow_assets.asset_keys import UseCaseKeys
from facilflow_assets.metadata import materialized_metadata, metadata_number, metadata_value
from facilflow_assets.scope import ModelScope
from facilflow_assets.use_case import UseCase

if TYPE_CHECKING:
    from facilflow_assets.demo.run import Lifecycle


class DayMonitoring(TypedDict):
    """One day's monitoring: its checks' outcomes, then the drift and quality figures."""

    checks: dict[str, bool]
    feature_drift: object
    drift_share: float
    drifted_features: object
    prediction_drift: object
    prediction_mean_shift_std: float
    report: object
    # Per version: the day's primary metric, its holdout's and the estimate (auc_v1, ...)
    quality: dict[str, object]
    degraded_versions: list[str]


class Monitoring(TypedDict):
    days: dict[str, DayMonitoring]
    serving_health: dict[str, object]  # the endpoint's request counts and its SLA


def _monitor_day(lifecycle: Lifecycle, scope: ModelScope, day: str, scored: bool) -> DayMonitoring:
    keys = UseCaseKeys(scope)
    monitored = [keys.feature_drift, keys.prediction_drift, keys.realized_quality]
    result = lifecycle.run(
        scope.definition_name("monitoring_job"),
        partition_key=day,
        asset_selection=monitored if scored else [keys.batch_predictions, *monitored],
    )
    features = materialized_metadata(result, keys.feature_drift.to_user_string())
    predictions = materialized_metadata(result, keys.prediction_drift.to_user_string())
    quality = materialized_metadata(result, keys.realized_quality.to_user_string())
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    return {
        "checks": checks,
        "feature_drift": features["drifted"],
        "drift_share": round(metadata_number(features, "drift_share"), 3),
        "drifted_features": features["drifted_columns"],
        "prediction_drift": predictions["drifted"],
        "prediction_mean_shift_std": round(metadata_number(predictions, "mean_shift_std"), 2),
        "report": features["report"],
        "quality": {
            name: round(value, 4)
            for name, value in quality.items()
            if isinstance(value, float) and "_v" in name
        },
        "degraded_versions": [str(v) for v in metadata_value(quality, "degraded_versions", list)],
    }


def monitor(lifecycle: Lifecycle, scope: ModelScope, use_case: UseCase) -> Monitoring:
    """Drift and quality of the batch day (scored by the serving walkthrough already) and of
    the unseen day, then the endpoint's health."""
    keys = UseCaseKeys(scope)
    days = use_case.demo_days
    seen, unseen = days.seen.isoformat(), days.unseen.isoformat()
    days = {
        seen: _monitor_day(lifecycle, scope, seen, scored=True),
        unseen: _monitor_day(lifecycle, scope, unseen, scored=False),
    }
    health = materialized_metadata(
        lifecycle.run(scope.definition_name("serving_health_job")),
        keys.serving_health.to_user_string(),
    )
    return {
        "days": days,
        "serving_health": {
            "requests": health["requests"],
            "invalid_requests": health["invalid_requests"],
            "breached_versions": health["breached_versions"],
            "p95_sla_ms": health["p95_sla_ms"],
        },
    }


def monitoring_line(monitoring: Monitoring, version: str, metric: str) -> str:
    """Per day: whether its features drifted, and `version`'s realized `metric` against its
    holdout's (and the estimate made before the outcomes)."""
    parts = []
    for day, facts in monitoring["days"].items():
        quality = facts["quality"]
        realized, holdout, estimated = (
            quality.get(f"{prefix}{metric}_v{version}") for prefix in ("", "holdout_", "estimated_")
        )
        drift = "drifted" if facts["feature_drift"] else "no drift"
        if isinstance(realized, float) and isinstance(holdout, float):
            verdict = "worse than its holdout" if version in facts["degraded_versions"] else "holds"
            figure = f"{metric.upper()} {realized:.3f} vs holdout {holdout:.3f}, {verdict}"
        else:
            figure = f"{metric.upper()} not measured"
        if isinstance(estimated, float):
            figure += f" (estimated {estimated:.3f})"
        parts.append(f"{day}: {drift}, {figure}")
    return "; ".join(parts)
