"""`make demo`: materialize every asset on the embedded defaults and summarise what was built."""

import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import dagster as dg
import polars as pl

from facilflow_assets.atomic_files import write_json_atomic
from facilflow_assets.events.reader import EventReader
from facilflow_assets.governance.walkthrough import promote_with_approval
from facilflow_assets.metadata import markdown_table
from facilflow_assets.monitoring.health_asset import SERVING_HEALTH_KEY
from facilflow_assets.monitoring.walkthrough import monitor
from facilflow_assets.serving.deployment import ENDPOINT_KEY
from facilflow_assets.serving.walkthrough import serve_and_score
from resources import EventsResource

SUMMARY_FILE = "demo-summary.json"


@dataclass(frozen=True)
class AssetSummary:
    asset: str
    group: str
    rows: int | None
    checks_passed: int
    checks_failed: int
    checks_warned: int


# What the summary reports of the model, by asset and metadata key.
MODEL_FACTS = {
    "training/trained_model": ["mlflow_run_id", "valid_auc", "trials", "failed_trials"],
    "evaluation/evaluation_report": ["auc", "baseline", "baseline_auc", "auc_lift", "passed"],
    "registry/registered_model_version": ["registered_model", "version", "stage", "alias"],
}


class DemoOutcome(NamedTuple):
    assets: list[AssetSummary]
    model: dict[str, object]  # run id, holdout metrics against the baseline, the version
    governance: dict[str, object]  # the staged version's way to Production, and the history
    serving: dict[str, object]  # the endpoint, the requests sent, the split seen, a batch day
    monitoring: dict[str, object]  # drift of a summer and a winter day, the endpoint's health
    events: dict[str, object]  # what was published to the lifecycle topic, what still waits


def run_demo(
    assets: list,
    resources: dict[str, object],
    instance: dg.DagsterInstance,
    home: Path,
    training: dict[str, object] | None = None,
) -> DemoOutcome:
    """Materialize `assets` (and checks) in one run on `instance`, take the registered
    version through the approval workflow to Production, serve it beside a challenger,
    score a day in batch, check a summer and a winter day for drift and the endpoint's
    health, and write the summary beside the data. `training` overrides the model's
    TrainingConfig (a smaller search, say)."""
    started = time.perf_counter()
    result = dg.materialize(
        [a for a in assets if not _served_or_partitioned(a)],
        resources=resources,
        instance=instance,
        run_config={
            "loggers": {"console": {"config": {"log_level": "INFO"}}},
            "ops": {"training__trained_model": {"config": training or {}}},
        },
        raise_on_error=True,
    )
    groups = {
        key: group
        for a in assets
        if isinstance(a, dg.AssetsDefinition)
        for key, group in a.group_names_by_key.items()
    }
    outcome = DemoOutcome(
        assets=summarize(result, groups),
        model=(model := model_facts(result)),
        governance=promote_with_approval(resources, instance, model["version"]),
        serving=serve_and_score(resources, instance),
        monitoring=monitor(resources, instance),
        events=publish_events(resources),
    )
    write_summary(outcome, home / SUMMARY_FILE, time.perf_counter() - started)
    return outcome


def _served_or_partitioned(asset) -> bool:
    """The endpoint needs a Production version (and its health, requests), and partitions
    are materialized one by one: these come after the lifecycle run."""
    if not isinstance(asset, dg.AssetsDefinition):
        return False
    served = {ENDPOINT_KEY, SERVING_HEALTH_KEY} & asset.keys
    return asset.partitions_def is not None or bool(served)


def publish_events(resources: dict[str, object]) -> dict[str, object]:
    """Relay the outbox to the broker, if one is configured, and count what is on the topic."""
    with dg.build_resources({"events": resources["events"]}) as built:  # resolves EnvVars
        events: EventsResource = built.events
        report = events.relay()
        if report is None:
            return {"broker": None, "published": 0, "waiting": events.outbox().waiting_count()}
        with EventReader(events.bootstrap_servers, events.topic) as reader:
            on_topic = Counter(event.type.value for event in reader.events(idle_s=1.5))
        return {
            "broker": events.bootstrap_servers,
            "topic": events.topic,
            "published": report.published,
            "waiting": report.waiting,
            **({"error": report.error} if report.error else {}),
            "on_topic": dict(on_topic),
        }


def summarize(
    result: dg.ExecuteInProcessResult, groups: dict[dg.AssetKey, str]
) -> list[AssetSummary]:
    rows: dict[dg.AssetKey, int | None] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        count = materialization.metadata.get("dagster/row_count")
        rows[materialization.asset_key] = count.value if count is not None else None
    outcomes: dict[dg.AssetKey, list[str]] = {key: [] for key in rows}
    for event in result.get_asset_check_evaluations():
        if event.passed:
            outcome = "passed"
        else:
            outcome = "warned" if event.severity == dg.AssetCheckSeverity.WARN else "failed"
        outcomes.setdefault(event.asset_key, []).append(outcome)
    return [
        AssetSummary(
            asset=key.to_user_string(),
            group=groups.get(key, ""),
            rows=rows[key],
            checks_passed=outcomes[key].count("passed"),
            checks_failed=outcomes[key].count("failed"),
            checks_warned=outcomes[key].count("warned"),
        )
        for key in sorted(rows, key=lambda k: k.to_user_string())
    ]


def model_facts(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    """The run id, holdout metrics against the baseline, and the registered version."""
    facts: dict[str, object] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        for name in MODEL_FACTS.get(materialization.asset_key.to_user_string(), []):
            if name in materialization.metadata:
                facts[name] = materialization.metadata[name].value
    return facts


def write_summary(outcome: DemoOutcome, path: Path, seconds: float) -> None:
    document = {
        "wall_seconds": round(seconds, 1),
        "model": outcome.model,
        "governance": outcome.governance,
        "serving": outcome.serving,
        "monitoring": outcome.monitoring,
        "events": outcome.events,
        "assets": [asdict(s) for s in outcome.assets],
    }
    write_json_atomic(document, path)


def summary_table(summary: list[AssetSummary]) -> str:
    return markdown_table(pl.DataFrame([asdict(s) for s in summary]))


def facts_table(model: dict[str, object]) -> str:
    return markdown_table(
        pl.DataFrame({"fact": list(model), "value": [str(v) for v in model.values()]})
    )
