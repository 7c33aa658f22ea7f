"""monitoring/serving_health: the endpoint's recent requests judged against the SLA."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl
from pydantic import Field

from facilflow_assets.asset_keys import MONITORING_GROUP, UseCaseKeys
from facilflow_assets.events.envelope import EventType, SlaBreached
from facilflow_assets.metadata import markdown_table
from facilflow_assets.monitoring.serving_health import (
    HealthThresholds,
    VersionHealth,
    health_table,
    requests_between,
    served,
    version_health,
)
from facilflow_assets.plots import latency_by_minute, markdown_image, png
from facilflow_assets.scope import ModelScope
from resources import EventsResource, ServingResource

WITHIN_SLA_CHECK = "within_sla"


class ServingHealthConfig(dg.Config):
    window_minutes: int = Field(default=60, ge=1, description="How far back to look.")
    p95_sla_ms: float = Field(
        default=50.0, gt=0, description="p95 latency a version must stay under, in the replica."
    )
    max_error_rate: float = Field(
        default=0.01, ge=0, le=1, description="Share of predictions that may fail (answer 500)."
    )
    min_requests: int = Field(
        default=20, ge=1, description="Requests a version needs in the window to be judged."
    )

    def thresholds(self) -> HealthThresholds:
        return HealthThresholds(self.p95_sla_ms, self.max_error_rate, self.min_requests)


def _latency_plot(requests: pl.DataFrame, sla_ms: float) -> str:
    per_minute = (
        served(requests)
        .group_by("model_version", pl.col("time").dt.truncate("1m"))
        .agg(pl.col("latency_ms").quantile(0.95))
        .sort("time")
    )
    minutes = {
        version: (rows["time"].to_list(), rows["latency_ms"].to_list())
        for (version,), rows in per_minute.group_by("model_version", maintain_order=True)
    }
    return markdown_image(png(latency_by_minute(minutes, sla_ms)), "p95 latency per minute")


def _breach_event(
    scope: ModelScope,
    version: VersionHealth,
    config: ServingHealthConfig,
    window: tuple[datetime, datetime],
    run_id: str,
):
    payload = SlaBreached(
        window_start=window[0].isoformat(),
        window_end=window[1].isoformat(),
        requests=version.requests,
        error_rate=version.error_rate,
        max_error_rate=config.max_error_rate,
        p95_ms=version.p95_ms,
        p95_sla_ms=config.p95_sla_ms,
        breaches=list(version.breaches),
    )
    return scope.event(
        EventType.SERVING_SLA_BREACHED,
        payload,
        version=version.model_version,
        dagster_run_id=run_id,
        once_per=run_id,  # one alert per version per evaluation, however often it is retried
    )


def build_serving_health_assets(scope: ModelScope) -> list[dg.AssetsDefinition]:
    """The use case's endpoint health."""
    keys = UseCaseKeys(scope)

    @dg.asset(
        key=keys.serving_health,
        group_name=MONITORING_GROUP,
        kinds={"polars"},
        deps=[keys.prediction_endpoint],
        check_specs=[dg.AssetCheckSpec(WITHIN_SLA_CHECK, asset=keys.serving_health)],
        description="p95 latency and error rate of each served version over the last window "
        "of the request log, against the SLA and the error-rate threshold.",
    )
    def serving_health(
        context: dg.AssetExecutionContext,
        config: ServingHealthConfig,
        serving: ServingResource,
        events: EventsResource,
    ) -> dg.MaterializeResult:
        return judge_serving_health(context, config, scope, serving, events)

    return [serving_health]


def judge_serving_health(
    context: dg.AssetExecutionContext,
    config: ServingHealthConfig,
    scope: ModelScope,
    serving: ServingResource,
    events: EventsResource,
) -> dg.MaterializeResult:
    end = datetime.now(UTC)
    window = (end - timedelta(minutes=config.window_minutes), end)
    requests = requests_between(serving.request_log_path(scope), *window)
    health = version_health(requests, config.thresholds())
    breached = [h for h in health if h.breaches]
    events.record([_breach_event(scope, h, config, window, context.run.run_id) for h in breached])
    judged = [h for h in health if h.judged]
    if breached:
        verdict = "; ".join(f"version {h.model_version}: {', '.join(h.breaches)}" for h in breached)
        check = dg.AssetCheckResult(check_name=WITHIN_SLA_CHECK, passed=False, description=verdict)
    elif not judged:
        check = dg.AssetCheckResult(
            check_name=WITHIN_SLA_CHECK,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"nothing to judge: no version had {config.min_requests} requests "
            f"in the last {config.window_minutes} minutes",
        )
    else:
        check = dg.AssetCheckResult(
            check_name=WITHIN_SLA_CHECK,
            passed=True,
            description=f"{len(judged)} version(s) within the SLA",
        )
    context.log.info(f"serving health over {requests.height} requests: {check.description}")
    metadata = {
        "window_start": window[0].isoformat(),
        "window_end": window[1].isoformat(),
        "requests": requests.height,
        "invalid_requests": requests.filter(pl.col("outcome") == "invalid").height,
        "p95_sla_ms": config.p95_sla_ms,
        "max_error_rate": config.max_error_rate,
        "breached_versions": dg.MetadataValue.json([h.model_version for h in breached]),
    }
    if health:
        metadata["versions"] = dg.MetadataValue.md(markdown_table(health_table(health)))
        metadata["latency"] = dg.MetadataValue.md(_latency_plot(requests, config.p95_sla_ms))
    return dg.MaterializeResult(metadata=metadata, check_results=[check])
