"""The demo's run: the warehouse once, features to registry for every use case of the default
tenant, then one use case through approval, serving and monitoring; and its summary."""

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import dagster as dg
import polars as pl

from facilflow_assets.asset_keys import FEATURES_GROUP, UseCaseKeys, op_name
from facilflow_assets.atomic_files import write_json_atomic
from facilflow_assets.definitions import shared_definitions, tenant_definitions
from facilflow_assets.demo.governance import Governance, promote_with_approval
from facilflow_assets.demo.monitoring import Monitoring, monitor, monitoring_line
from facilflow_assets.demo.plan import DemoPlan, load_plan
from facilflow_assets.demo.serving import Serving, serve_and_score
from facilflow_assets.evaluation.metrics import SCORING
from facilflow_assets.events.reader import EventReader
from facilflow_assets.metadata import markdown_table, metadata_value
from facilflow_assets.scope import ModelScope
from facilflow_assets.tenants import DEFAULT_TENANT, TenantSpec, load_tenants
from facilflow_assets.use_case import load_use_case, use_case_path
from resources import EventsResource, RayResource

SUMMARY_FILE = "demo-summary.json"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AssetSummary:
    asset: str
    group: str
    rows: int | None
    checks_passed: int
    checks_failed: int
    checks_warned: int


# What the summary reports of each model, by asset and metadata key.
MODEL_FACTS = {
    "trained_model": ["mlflow_run_id", "valid_auc", "valid_rmse", "trials", "failed_trials"],
    "evaluation_report": [
        "auc",
        "baseline_auc",
        "auc_lift",
        "rmse",
        "baseline_rmse",
        "rmse_lift",
        "baseline",
        "passed",
    ],
    "registered_model_version": ["registered_model", "version", "stage", "alias"],
}


class DemoOutcome(NamedTuple):
    assets: list[AssetSummary]
    model: dict[str, object]  # run id, holdout metrics against the baseline, the version
    models: dict[str, dict[str, object]]  # the same of every use case, by use case
    governance: Governance  # the staged version's way to Production, and the history
    serving: Serving  # the endpoint, the requests sent, the split seen, a batch day
    monitoring: Monitoring  # drift of a summer and a winter day, the endpoint's health
    events: dict[str, object]  # what was published to the lifecycle topic, what still waits


class Stopwatch:
    """Seconds per phase of the demo, kept for the summary; each phase's line (its time
    and key figure) goes to `progress` as it ends."""

    def __init__(self, progress: Callable[[str], None] | None = None):
        self.seconds: dict[str, float] = {}
        self._started = time.perf_counter()
        self._progress = progress or log.info

    def lap(self, phase: str, figure: str = "") -> None:
        now = time.perf_counter()
        self.seconds[phase] = round(now - self._started, 1)
        self._progress(f"  {phase:<20} {self.seconds[phase]:>5.0f} s   {figure}".rstrip())
        self._started = now


class Lifecycle(NamedTuple):
    """The default tenant's location, run job by job on one instance."""

    defs: dg.Definitions
    instance: dg.DagsterInstance
    tenant: str

    def run(self, job: str, **kwargs) -> dg.ExecuteInProcessResult:
        """Run the location's job `job` (a use case's are `<use case>_<job>`) in process."""
        return self.defs.resolve_job_def(job).execute_in_process(instance=self.instance, **kwargs)

    def scope(self, use_case: str) -> ModelScope:
        return ModelScope(self.tenant, use_case)


def run_demo(
    resources: dict[str, object],
    instance: dg.DagsterInstance,
    home: Path,
    plan: DemoPlan | None = None,
    tenant: str = DEFAULT_TENANT,
    spec: TenantSpec | None = None,
    progress: Callable[[str], None] | None = None,
) -> DemoOutcome:
    """Build the warehouse, train, evaluate and register a model of every use case of
    `tenant` (as tenants.yaml declares it, unless `spec` is given), take the walkthrough's
    version through the approval workflow to Production, serve it beside a challenger,
    score a day in batch, check a seen and an unseen day for drift and the endpoint's
    health, and write the summary beside the data. Each stage's line goes to `progress`."""
    plan = plan or load_plan()
    spec = spec or load_tenants()[tenant]
    started = time.perf_counter()
    stopwatch = Stopwatch(progress)
    resources = with_one_local_ray(resources)
    defs = dg.Definitions.merge(
        shared_definitions(resources), tenant_definitions(tenant, resources, spec)
    )
    lifecycle = Lifecycle(defs, instance, tenant)
    stopwatch.lap("Ray and definitions", f"{len(spec.use_cases)} use cases of tenant {tenant}")
    results = [lifecycle.run("warehouse_job")]
    stopwatch.lap("warehouse", f"{len(results[0].get_asset_materialization_events())} tables")
    models: dict[str, dict[str, object]] = {}
    for use_case in spec.use_cases:
        log.info(f"demo: {use_case}: features, training, evaluation, registration")
        trained = train_use_case(lifecycle, use_case, plan)
        results += trained
        models[use_case] = model_facts(trained[-1], lifecycle.scope(use_case))
        stopwatch.lap(use_case, model_line(models[use_case]))
    model = models[plan.walkthrough]
    scope = lifecycle.scope(plan.walkthrough)
    version = metadata_value(model, "version", str)
    governance = promote_with_approval(lifecycle, scope, plan, version)
    stopwatch.lap(
        "governance",
        f"version {governance['version']} to {governance['stage']}: requested by "
        f"{governance['requested_by']}, approved by {governance['approved_by']}",
    )
    use_case = load_use_case(use_case_path(plan.walkthrough))
    serving = serve_and_score(lifecycle, scope, use_case, plan)
    stopwatch.lap(
        "serving",
        f"{serving['endpoint']}: v{serving['production_version']}, challenger share "
        f"{serving['challenger_share_observed']:.0%}; {serving['batch_rows']:,} "
        f"{use_case.target.subject}s scored on {serving['batch_day']}",
    )
    monitoring = monitor(lifecycle, scope, use_case)
    metric = SCORING[use_case.task].primary
    stopwatch.lap("monitoring", monitoring_line(monitoring, version, metric))
    outcome = DemoOutcome(
        assets=summarize(results, lifecycle.defs),
        model=model,
        models=models,
        governance=governance,
        serving=serving,
        monitoring=monitoring,
        events=publish_events(resources),
    )
    stopwatch.lap("events", f"{outcome.events['published']} published")
    write_summary(outcome, home / SUMMARY_FILE, time.perf_counter() - started, stopwatch)
    return outcome


def with_one_local_ray(resources: dict[str, object]) -> dict[str, object]:
    """The resources with training on the endpoint's local Ray head, when neither names a
    cluster: one Ray for the whole demo, instead of one started and stopped per training
    step (each start costs seconds to tens of seconds on two cores)."""
    with dg.build_resources({k: resources[k] for k in ("ray_cluster", "serving")}) as built:
        if built.ray_cluster.address or built.serving.ray_address:
            return resources
        address = built.serving.cluster_address()  # starts the head the endpoint will use
        ray_cluster = RayResource(**{**built.ray_cluster.model_dump(), "address": address})
    return {**resources, "ray_cluster": ray_cluster}


def train_use_case(
    lifecycle: Lifecycle, use_case: str, plan: DemoPlan
) -> list[dg.ExecuteInProcessResult]:
    """Features (the online store only for the walkthrough's use case, which serves), then
    training, evaluation and registration."""
    scope = lifecycle.scope(use_case)
    keys = UseCaseKeys(scope)
    features = lifecycle.defs.resolve_asset_graph().get_all_asset_keys()
    selection = [
        key
        for key in features
        if key.path[:3] == [*scope.key_prefix, FEATURES_GROUP]
        and (use_case == plan.walkthrough or key != keys.online_store)
    ]
    training = plan.training if use_case == plan.walkthrough else plan.other_training
    return [
        lifecycle.run(scope.definition_name("features_job"), asset_selection=selection),
        lifecycle.run(
            scope.definition_name("training_job"),
            run_config={"ops": {op_name(keys.trained_model): {"config": training}}},
            # Only the walkthrough needs a registered version; another use case's candidate
            # that fails its thresholds is reported in the summary.
            raise_on_error=use_case == plan.walkthrough,
        ),
    ]


def model_line(facts: dict[str, object]) -> str:
    """The model's holdout metric against its baseline's, and its registered version."""
    metric = next((m for m in ("auc", "rmse") if m in facts), None)
    if metric is None:
        return "not evaluated: its run failed (see the log)"
    verdict = (
        f"version {facts['version']} in {facts['stage']}"
        if "version" in facts
        else "not registered"
    )
    return (
        f"holdout {metric.upper()} {facts[metric]:.3f} vs {facts[f'baseline_{metric}']:.3f} "
        f"({facts['baseline']}); {verdict}"
    )


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


def summarize(results: list[dg.ExecuteInProcessResult], defs: dg.Definitions) -> list[AssetSummary]:
    graph = defs.resolve_asset_graph()
    rows: dict[dg.AssetKey, int | None] = {}
    outcomes: dict[dg.AssetKey, list[str]] = {}
    for result in results:
        for event in result.get_asset_materialization_events():
            materialization = event.materialization
            count = materialization.metadata.get("dagster/row_count")
            rows[materialization.asset_key] = (
                count.value if isinstance(count, dg.IntMetadataValue) else None
            )
        for event in result.get_asset_check_evaluations():
            if event.passed:
                outcome = "passed"
            else:
                outcome = "warned" if event.severity == dg.AssetCheckSeverity.WARN else "failed"
            outcomes.setdefault(event.asset_key, []).append(outcome)
    return [
        AssetSummary(
            asset=key.to_user_string(),
            group=graph.get(key).group_name or "",
            rows=rows[key],
            checks_passed=outcomes.get(key, []).count("passed"),
            checks_failed=outcomes.get(key, []).count("failed"),
            checks_warned=outcomes.get(key, []).count("warned"),
        )
        for key in sorted(rows, key=lambda k: k.to_user_string())
    ]


def model_facts(result: dg.ExecuteInProcessResult, scope: ModelScope) -> dict[str, object]:
    """The run id, holdout metrics against the baseline, and the registered version."""
    facts: dict[str, object] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        key = materialization.asset_key
        if key.path[:2] != scope.key_prefix:
            continue
        for name in MODEL_FACTS.get(key.path[-1], []):
            if name in materialization.metadata:
                facts[name] = materialization.metadata[name].value
    return facts


def write_summary(outcome: DemoOutcome, path: Path, seconds: float, stopwatch: Stopwatch) -> None:
    document = {
        "wall_seconds": round(seconds, 1),
        "phase_seconds": stopwatch.seconds,
        "model": outcome.model,
        "models": outcome.models,
        "governance": outcome.governance,
        "serving": outcome.serving,
        "monitoring": outcome.monitoring,
        "events": outcome.events,
        "assets": [asdict(s) for s in outcome.assets],
    }
    write_json_atomic(document, path)


def summary_table(summary: list[AssetSummary]) -> str:
    return markdown_table(pl.DataFrame([asdict(s) for s in summary]))


def facts_table(model: Mapping[str, object]) -> str:
    return markdown_table(
        pl.DataFrame({"fact": list(model), "value": [str(v) for v in model.values()]})
    )
