"""Serving health: throughput, latency and failures per model version over a recent window
of requests.

Read from the endpoint's request log. A version breaches when its p95 latency exceeds the
SLA or its share of failed predictions (answers 500) exceeds the error-rate threshold.
Invalid requests (answers 4xx) are refused before any version is chosen: they are the
caller's mistake, counted for the endpoint as a whole. A version with fewer requests than
`min_requests` in the window is reported but not judged on those. With a throughput floor
configured, a version also breaches when it served fewer requests per second over the
window than the floor, however few it served: a drop in traffic is what the floor is for.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from facilflow_assets.serving.request_log import read_requests

LATENCY = "latency"
ERRORS = "errors"
THROUGHPUT = "throughput"


@dataclass(frozen=True)
class HealthThresholds:
    p95_sla_ms: float
    max_error_rate: float
    min_requests: int
    min_rps: float | None = None  # the throughput floor; none unless configured


@dataclass(frozen=True)
class VersionHealth:
    model_version: str
    role: str  # the role of its latest request: production or challenger
    requests: int  # predictions attempted: answered 200 or 500
    errors: int
    rps: float  # requests per second over the window
    p50_ms: float
    p95_ms: float
    p99_ms: float
    judged: bool  # enough requests to judge
    breaches: tuple[str, ...]

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def requests_between(root: Path, start: datetime, end: datetime) -> pl.DataFrame:
    """Every logged request with `start` <= time < `end` (aware datetimes)."""
    days = [(start + timedelta(days=n)).date() for n in range((end.date() - start.date()).days + 1)]
    frames = [read_requests(root, day.isoformat()) for day in days]
    every = pl.concat(frames, how="diagonal_relaxed")
    return every.filter(pl.col("time").is_between(start, end, closed="left"))


def served(requests: pl.DataFrame) -> pl.DataFrame:
    """The requests a version answered (200 or 500), without the refused ones."""
    return requests.filter(pl.col("model_version").is_not_null() & (pl.col("outcome") != "invalid"))


def version_health(
    requests: pl.DataFrame, thresholds: HealthThresholds, window_seconds: float
) -> list[VersionHealth]:
    """One verdict per model version seen in `requests` (those of a window of
    `window_seconds`), in version order."""
    attributed = served(requests)
    health = []
    by_version = sorted(attributed.group_by("model_version"), key=lambda group: int(group[0][0]))
    for (version,), rows in by_version:
        errors = rows.filter(pl.col("outcome") == "error").height
        latency = rows["latency_ms"]
        quantiles = [float(latency.quantile(q) or 0.0) for q in (0.5, 0.95, 0.99)]
        judged = rows.height >= thresholds.min_requests
        breaches = []
        if judged and quantiles[1] > thresholds.p95_sla_ms:
            breaches.append(LATENCY)
        if judged and errors / rows.height > thresholds.max_error_rate:
            breaches.append(ERRORS)
        rps = rows.height / window_seconds
        if thresholds.min_rps is not None and rps < thresholds.min_rps:
            breaches.append(THROUGHPUT)
        health.append(
            VersionHealth(
                model_version=version,
                role=rows.sort("time")["role"][-1],
                requests=rows.height,
                errors=errors,
                rps=rps,
                p50_ms=quantiles[0],
                p95_ms=quantiles[1],
                p99_ms=quantiles[2],
                judged=judged,
                breaches=tuple(breaches),
            )
        )
    return health


def health_table(health: list[VersionHealth]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "version": h.model_version,
                "role": h.role,
                "requests": h.requests,
                "rps": round(h.rps, 3),
                "errors": h.errors,
                "error_rate": round(h.error_rate, 4),
                "p50_ms": round(h.p50_ms, 2),
                "p95_ms": round(h.p95_ms, 2),
                "p99_ms": round(h.p99_ms, 2),
                "verdict": ", ".join(h.breaches) or ("ok" if h.judged else "too few requests"),
            }
            for h in health
        ]
    )


def per_minute(requests: pl.DataFrame) -> pl.DataFrame:
    """Per version and minute of the requests it served: requests per second and latency
    percentiles. A minute without requests has no row; those at the window's edges are
    partial."""
    latency = pl.col("latency_ms")
    return (
        served(requests)
        .group_by("model_version", pl.col("time").dt.truncate("1m").alias("minute"))
        .agg(
            (pl.len() / 60).alias("rps"),
            latency.quantile(0.5).alias("p50_ms"),
            latency.quantile(0.95).alias("p95_ms"),
            latency.quantile(0.99).alias("p99_ms"),
        )
        .sort("model_version", "minute")
    )
