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
    per_minute,
    requests_between,
    version_health,
)
from facilflow_assets.plots import markdown_image, png, throughput_and_latency_by_minute
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
        default=20,
        ge=1,
        description="Requests a version needs in the window to be judged on latency and errors.",
    )
    min_rps: float | None = Field(
        default=None,
        gt=0,
        description="Throughput floor: a version serving fewer requests per second over the "
        "window breaches, and a window without any request fails the check. None: no floor.",
    )

    def thresholds(self) -> HealthThresholds:
        return HealthThresholds(
            self.p95_sla_ms, self.max_error_rate, self.min_requests, self.min_rps
        )


def _throughput_and_latency_plot(minutes: pl.DataFrame, config: ServingHealthConfig) -> str:
    series = {
        version: (rows["minute"].to_list(), rows["rps"].to_list(), rows["p95_ms"].to_list())
        for (version,), rows in minutes.group_by("model_version", maintain_order=True)
    }
    figure = throughput_and_latency_by_minute(series, config.p95_sla_ms, config.min_rps)
    return markdown_image(png(figure), "throughput and p95 latency per minute")


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
        rps=version.rps,
        min_rps=config.min_rps,
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
        description="Throughput, p50/p95/p99 latency and error rate of each served version "
        "over the last window of the request log, per minute and over the window, against "
        "the SLA, the error-rate threshold and, when configured, the throughput floor.",
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
    health = version_health(requests, config.thresholds(), config.window_minutes * 60)
    breached = [h for h in health if h.breaches]
    events.record([_breach_event(scope, h, config, window, context.run.run_id) for h in breached])
    judged = [h for h in health if h.judged]
    if breached:
        verdict = "; ".join(f"version {h.model_version}: {', '.join(h.breaches)}" for h in breached)
        check = dg.AssetCheckResult(check_name=WITHIN_SLA_CHECK, passed=False, description=verdict)
    elif not health and config.min_rps is not None:
        check = dg.AssetCheckResult(
            check_name=WITHIN_SLA_CHECK,
            passed=False,
            description=f"no request served in the last {config.window_minutes} minutes: "
            f"below the throughput floor of {config.min_rps:g} per second",
        )
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
        **({"min_rps": config.min_rps} if config.min_rps is not None else {}),
        "breached_versions": dg.MetadataValue.json([h.model_version for h in breached]),
    }
    if health:
        minutes = per_minute(requests)
        metadata["versions"] = dg.MetadataValue.md(markdown_table(health_table(health)))
        metadata["per_minute"] = dg.MetadataValue.md(markdown_table(_rounded(minutes)))
        metadata["throughput_and_latency"] = dg.MetadataValue.md(
            _throughput_and_latency_plot(minutes, config)
        )
    return dg.MaterializeResult(metadata=metadata, check_results=[check])


def _rounded(minutes: pl.DataFrame) -> pl.DataFrame:
    return minutes.with_columns(
        pl.col("minute").dt.strftime("%Y-%m-%d %H:%M"),
        pl.col("rps").round(3),
        pl.col("p50_ms", "p95_ms", "p99_ms").round(2),
    )
