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
from facilflow_assets.use_case import SlaSpec, UseCase
from resources import EventsResource, ServingResource

WITHIN_SLA_CHECK = "within_sla"
SLA_OVERRIDE = "Instead of the use case file's `sla` for this run."


class ServingHealthConfig(dg.Config):
    window_minutes: int = Field(default=60, ge=1, description="How far back to look.")
    min_requests: int = Field(
        default=20,
        ge=1,
        description="Requests a version needs in the window to be judged on latency and errors.",
    )
    p95_sla_ms: float | None = Field(default=None, gt=0, description=SLA_OVERRIDE)
    max_error_rate: float | None = Field(default=None, ge=0, le=1, description=SLA_OVERRIDE)
    min_rps: float | None = Field(
        default=None,
        gt=0,
        description="Throughput floor, instead of the file's `sla.min_rps`: a version serving "
        "fewer requests per second over the window breaches, and a window without any "
        "request fails the check.",
    )

    def thresholds(self, sla: SlaSpec) -> HealthThresholds:
        """The use case file's SLA, with this run's overrides."""
        return HealthThresholds(
            self.p95_sla_ms or sla.p95_ms,
            sla.max_error_rate if self.max_error_rate is None else self.max_error_rate,
            self.min_requests,
            self.min_rps or sla.min_rps,
        )


def _throughput_and_latency_plot(minutes: pl.DataFrame, limits: HealthThresholds) -> str:
    series = {
        version: (rows["minute"].to_list(), rows["rps"].to_list(), rows["p95_ms"].to_list())
        for (version,), rows in minutes.group_by("model_version", maintain_order=True)
    }
    figure = throughput_and_latency_by_minute(series, limits.p95_sla_ms, limits.min_rps)
    return markdown_image(png(figure), "throughput and p95 latency per minute")


def _breach_event(
    scope: ModelScope,
    version: VersionHealth,
    limits: HealthThresholds,
    window: tuple[datetime, datetime],
    run_id: str,
):
    payload = SlaBreached(
        window_start=window[0].isoformat(),
        window_end=window[1].isoformat(),
        requests=version.requests,
        rps=version.rps,
        min_rps=limits.min_rps,
        error_rate=version.error_rate,
        max_error_rate=limits.max_error_rate,
        p95_ms=version.p95_ms,
        p95_sla_ms=limits.p95_sla_ms,
        breaches=list(version.breaches),
    )
    return scope.event(
        EventType.SERVING_SLA_BREACHED,
        payload,
        version=version.model_version,
        dagster_run_id=run_id,
        once_per=run_id,  # one alert per version per evaluation, however often it is retried
    )


def build_serving_health_assets(use_case: UseCase, scope: ModelScope) -> list[dg.AssetsDefinition]:
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
        limits = config.thresholds(use_case.sla)
        return judge_serving_health(context, config, limits, scope, serving, events)

    return [serving_health]


def judge_serving_health(
    context: dg.AssetExecutionContext,
    config: ServingHealthConfig,
    limits: HealthThresholds,
    scope: ModelScope,
    serving: ServingResource,
    events: EventsResource,
) -> dg.MaterializeResult:
    end = datetime.now(UTC)
    window = (end - timedelta(minutes=config.window_minutes), end)
    requests = requests_between(serving.request_log_path(scope), *window)
    health = version_health(requests, limits, config.window_minutes * 60)
    breached = [h for h in health if h.breaches]
    events.record([_breach_event(scope, h, limits, window, context.run.run_id) for h in breached])
    judged = [h for h in health if h.judged]
    if breached:
        verdict = "; ".join(f"version {h.model_version}: {', '.join(h.breaches)}" for h in breached)
        check = dg.AssetCheckResult(check_name=WITHIN_SLA_CHECK, passed=False, description=verdict)
    elif not health and limits.min_rps is not None:
        check = dg.AssetCheckResult(
            check_name=WITHIN_SLA_CHECK,
            passed=False,
            description=f"no request served in the last {config.window_minutes} minutes: "
            f"below the throughput floor of {limits.min_rps:g} per second",
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
        "p95_sla_ms": limits.p95_sla_ms,
        "max_error_rate": limits.max_error_rate,
        **({"min_rps": limits.min_rps} if limits.min_rps is not None else {}),
        "breached_versions": dg.MetadataValue.json([h.model_version for h in breached]),
    }
    if health:
        minutes = per_minute(requests)
        metadata["versions"] = dg.MetadataValue.md(markdown_table(health_table(health)))
        metadata["per_minute"] = dg.MetadataValue.md(markdown_table(_rounded(minutes)))
        metadata["throughput_and_latency"] = dg.MetadataValue.md(
            _throughput_and_latency_plot(minutes, limits)
        )
    return dg.MaterializeResult(metadata=metadata, check_results=[check])


def _rounded(minutes: pl.DataFrame) -> pl.DataFrame:
    return minutes.with_columns(
        pl.col("minute").dt.strftime("%Y-%m-%d %H:%M"),
        pl.col("rps").round(3),
        pl.col("p50_ms", "p95_ms", "p99_ms").round(2),
    )
