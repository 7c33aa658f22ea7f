"""The `facilflow` command line."""

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import click
import dagster as dg
import polars as pl

if TYPE_CHECKING:  # for annotations only: each command imports what it uses when it runs
    from mlflow.tracking import MlflowClient

    from facilflow_assets.demo.run import DemoOutcome
    from facilflow_assets.governance.audit import AuditTrail
    from facilflow_assets.scope import ModelScope
    from facilflow_assets.use_case import UseCase
    from resources import EventsResource


@click.group()
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Local working directory (default: .facilflow in the project).",
)
@click.option(
    "--tenant",
    envvar="FACILFLOW_TENANT",
    default="demo",
    show_default=True,
    help="The tenant whose models to work on (FACILFLOW_TENANT).",
)
@click.pass_context
def main(context: click.Context, home: Path | None, tenant: str) -> None:
    """FacilFlow: the ML lifecycle as Dagster assets."""
    # MLflow's INFO lines (a new store's tables, say) are not the command's answer.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    context.obj = {"home": home, "tenant": tenant}


def _use_case_option(group):
    """`--use-case` on a command group: which of the tenant's use cases it works on."""

    def remember(context: click.Context, _, value: str | None) -> str:
        from facilflow_assets.scope import ModelScope, ScopeError
        from facilflow_assets.tenants import load_tenants

        tenants = load_tenants()
        tenant = context.obj["tenant"]
        if tenant not in tenants:
            raise click.BadParameter(
                f"no tenant '{tenant}' in tenants.yaml; there are: {', '.join(tenants)}",
                param_hint="--tenant",
            )
        served = tenants[tenant].use_cases
        name = value or served[0]
        if name not in served:
            raise click.BadParameter(
                f"tenant '{tenant}' runs no use case '{name}'; it runs: {', '.join(served)}"
            )
        try:
            context.obj["scope"] = ModelScope(tenant, name)
        except ScopeError as error:
            raise click.BadParameter(str(error)) from None
        return name

    return click.option(
        "--use-case",
        "-u",
        envvar="FACILFLOW_USE_CASE",
        default=None,
        callback=remember,
        expose_value=False,
        help="The use case (FACILFLOW_USE_CASE); the tenant's first by default.",
    )(group)


@main.command()
@click.pass_context
def demo(context: click.Context) -> None:
    """Build every use case of the demo tenant and walk one through its whole lifecycle, on
    the embedded defaults; print a line per stage, then a summary and what to do next.

    Runs are recorded in the local instance `<home>/dagster_home`, the one `make dev`
    opens, so the Dagster UI shows them afterwards. Dagster's and the libraries' output
    goes to a log file under `<home>/logs/`.
    """
    from datetime import datetime

    from facilflow_assets.demo.console import quiet_console
    from facilflow_assets.environment import LOCAL_HOME, Environment

    home = context.obj["home"] or LOCAL_HOME
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    log_path = home / "logs" / f"demo-{datetime.now():%Y%m%d-%H%M%S}.log"
    click.echo(f"FacilFlow demo: every stage below; the full log is {log_path}")
    with quiet_console(log_path) as progress:
        # Imported here: Ray's, Feast's and Dagster's import-time warnings go to the log.
        from facilflow_assets.demo.run import SUMMARY_FILE, run_demo
        from facilflow_assets.resource_map import build_resources

        resources = build_resources(Environment.LOCAL, home=home)
        with (
            _demo_broker(resources, home) as resources,
            dg.DagsterInstance.from_config(str(dagster_home)) as instance,
        ):
            outcome = run_demo(resources, instance, home, progress=progress)
    _print_demo_summary(outcome, home / SUMMARY_FILE)


def _print_demo_summary(outcome: "DemoOutcome", summary_path: Path) -> None:
    from facilflow_assets.demo.run import facts_table, summary_table
    from facilflow_assets.metadata import markdown_table

    def section(title: str, body: str) -> None:
        click.echo(f"\n## {title}\n\n{body}")

    section("Assets", summary_table(outcome.assets))
    models = [{"use_case": name, **_rounded(facts)} for name, facts in outcome.models.items()]
    section("Models (holdout against the baseline)", markdown_table(pl.DataFrame(models)))
    governance = {k: v for k, v in outcome.governance.items() if k != "history"}
    section("Governance", facts_table(governance))
    click.echo("\n" + markdown_table(pl.DataFrame(outcome.governance["history"])))
    serving = {k: v for k, v in outcome.serving.items() if k != "requests"}
    section("Serving", facts_table(_rounded(serving)))
    for request in outcome.serving["requests"]:
        click.echo(json.dumps(_rounded(request)))
    days = [{"day": day, **_rounded(facts)} for day, facts in outcome.monitoring["days"].items()]
    section(
        "Monitoring (drift, and realized against holdout quality)",
        markdown_table(pl.DataFrame(days)),
    )
    click.echo("\n" + facts_table(_rounded(outcome.monitoring["serving_health"])))
    section("Lifecycle events", facts_table(outcome.events))
    endpoint, cli = serving["endpoint"], ".venv/bin/facilflow"
    staged = serving["challenger_version"] or "VERSION"
    section(
        "What next",
        f"""- `make dev`: the Dagster UI on http://127.0.0.1:3000 (lineage, runs, checks, plots)
  and the MLflow UI on http://127.0.0.1:5000 (runs, the registry).
- Ask the endpoint, which keeps serving at {endpoint}:
  curl -s {endpoint} -d '{json.dumps(serving["sample_request"])}'
- Take the Staging version to Production (with `make dev` running, the sensors promote
  it and redeploy the endpoint):
  FACILFLOW_USER=carol {cli} models request {staged} --comment "ready"
  FACILFLOW_USER=dave {cli} models approve {staged} --comment ok
- `{cli} events tail`: the lifecycle events; `{cli} serve stop` stops the endpoint.
- The summary as JSON: {summary_path}""",
    )


def _rounded(facts: Mapping[str, object]) -> dict[str, object]:
    """Floats to 4 significant figures and nested values as text, for a person to read."""
    return {
        key: float(f"{value:.4g}")
        if isinstance(value, float)
        else value
        if isinstance(value, str | int | bool | None)
        else json.dumps(value, default=str)
        for key, value in facts.items()
    }


@contextlib.contextmanager
def _demo_broker(resources: dict[str, object], home: Path):
    """The resources with a local Kafka-compatible broker for the events, unless one is
    configured (KAFKA_BOOTSTRAP_SERVERS) or none can start (events then wait in the outbox)."""
    from facilflow_assets.events.local_broker import LocalBroker
    from resources import EventsResource

    events = resources["events"]
    if not isinstance(events, EventsResource):
        raise TypeError(f"the 'events' resource is a {type(events).__name__}, not EventsResource")
    if events.bootstrap_servers:
        yield resources
        return
    try:
        broker = LocalBroker(home / "broker.log").start()
    except RuntimeError as error:
        click.echo(f"events stay in the outbox: {error}", err=True)
        yield resources
        return
    try:
        local = EventsResource(
            outbox_url=events.outbox_url, bootstrap_servers=broker.bootstrap_servers
        )
        yield {**resources, "events": local}
    finally:
        broker.stop()


@contextlib.contextmanager
def _resources(context: click.Context, *keys: str):
    """The named resources of the current environment, resolved as a run would (EnvVar
    settings included), outside any Dagster run."""
    from facilflow_assets.environment import get_environment
    from facilflow_assets.resource_map import build_resources
    from facilflow_assets.tenants import load_tenants

    tenant = load_tenants().get(context.obj["tenant"])
    approvers = tenant.approvers if tenant else []
    configured = build_resources(
        get_environment(), home=context.obj["home"], approvers=approvers, keys=keys
    )
    with dg.build_resources(configured) as resources:
        yield resources


@main.group("use-cases")
def use_cases() -> None:
    """The use case files: which there are, and whether a new one is complete."""


@use_cases.command("list")
def list_use_cases() -> None:
    """Every use case file, with what it predicts and the tenants that run it."""
    from facilflow_assets.tenants import load_tenants
    from facilflow_assets.use_case import USE_CASES_DIR, load_use_case

    tenants = load_tenants()
    for path in sorted(USE_CASES_DIR.glob("*.yaml")):
        runs = [name for name, spec in tenants.items() if path.stem in spec.use_cases]
        try:
            described = load_use_case(path).description
        except ValueError as error:
            described = f"does not load: {error}"
        click.echo(f"{path.stem} [{', '.join(runs) or 'no tenant'}]: {described}")


@use_cases.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--data",
    is_flag=True,
    help="Also check it against the warehouse: models, columns and their types, keys, the "
    "label's classes, labelled rows in each split.",
)
@click.pass_context
def check_use_case(context: click.Context, path: Path, data: bool) -> None:
    """Check a use case file as the code location would load it, and build its Feast
    objects; print what it declares, or each mistake with where it is. With --data,
    every mistake against the warehouse's data, one per line."""
    from facilflow_assets.feature_spec import FeatureSpecError
    from facilflow_assets.features.feast_objects import feast_objects
    from facilflow_assets.use_case import load_use_case

    try:
        use_case = load_use_case(path)
        objects = feast_objects(use_case, Path("features"))
    except (FeatureSpecError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    target = use_case.target
    facts = {
        "use case": use_case.use_case,
        "predicts": use_case.description,
        "one row per": f"{target.subject} of {target.model}, keys {', '.join(target.keys)}",
        "label": use_case.label,
        "feature tables": ", ".join(t.name for t in use_case.tables),
        "served features": len(use_case.served_features()),
        "feast objects": len(objects),
        "feature service": use_case.feature_service,
        "baseline": use_case.baseline.name,
        "gates": ", ".join(
            f"{name} {value}"
            for name, value in use_case.gates.model_dump(exclude_none=True).items()
            if ("rmse" in name) == (use_case.task == "regression")
        ),
        **({"decision": _decision_words(use_case)} if use_case.task == "binary" else {}),
        "days": f"{use_case.calendar.start} to {use_case.calendar.end} "
        f"({use_case.calendar.time_zone})",
    }
    for name, value in facts.items():
        click.echo(f"{name}: {value}")
    if data:
        _check_against_data(context, path, use_case)


def _decision_words(use_case: "UseCase") -> str:
    decision = use_case.decision
    if decision.threshold is not None:
        return f"positive from {decision.threshold}"
    target = f" {decision.target}" if decision.target is not None else ""
    return f"threshold picked on validation: {decision.rule}{target}"


def _check_against_data(context: click.Context, path: Path, use_case: "UseCase") -> None:
    from facilflow_assets.features.data_check import check_data

    with _resources(context, "storage") as resources:
        found = check_data(use_case, resources.storage)
    for split, facts in found.facts.items():
        click.echo(f"{split}: " + ", ".join(f"{name} {value:,}" for name, value in facts.items()))
    if found.problems:
        lines = [f"{path}: {p.field}: {p.problem}" for p in found.problems]
        raise click.ClickException(
            f"{len(lines)} mistake(s) against the warehouse's data:\n" + "\n".join(lines)
        )
    click.echo(f"{path}: the warehouse's data fits the file")


@main.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,  # `--help` goes to feast: `facilflow feast -u X apply --help`
)
@_use_case_option
@click.argument("feast_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def feast(context: click.Context, feast_args: tuple[str, ...]) -> None:
    """Run the `feast` CLI on a use case's Feast project: `facilflow feast -u airport_rain
    apply`, `... materialize-incremental 2013-12-31T23:00:00`, `... feature-views list`.

    The repository is generated from the use-case file into <home>/feast/repos/<project>/,
    with the registry and stores the assets use; no file is edited by hand, and no other
    use case's project is touched.
    """
    import subprocess
    import sys

    from facilflow_assets.features.feast_repo import write_feature_repo
    from facilflow_assets.features.lineup import service_lineup
    from facilflow_assets.use_case import load_use_case, use_case_path

    scope = context.obj["scope"]
    path = use_case_path(scope.use_case)
    with _resources(context, "feast", "mlflow") as resources:
        store = resources.feast
        lineup = service_lineup(load_use_case(path), scope, store, resources.mlflow)
        repo = write_feature_repo(
            store.state_dir / "repos" / scope.feast_project,
            store.repo_settings(scope),
            path,
            store.storage.files(scope).features_dir,
            lineup,
        )
    executable = Path(sys.executable).parent / "feast"
    completed = subprocess.run([str(executable), *feast_args], cwd=repo, check=False)
    context.exit(completed.returncode)


@main.group()
def serve() -> None:
    """The real-time endpoint's Ray cluster on this machine."""


@serve.command()
@_use_case_option
@click.option(
    "--challenger-share",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of requests the Staging version answers.",
)
@click.option("--replicas", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--max-replicas-per-node",
    type=click.IntRange(min=1),
    default=None,
    help="At most this many replicas on one node (1: a node lost takes one replica).",
)
@click.option(
    "--trial-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=120.0,
    show_default=True,
    help="Seconds the new replicas may take to start before the update is refused.",
)
@click.pass_context
def start(
    context: click.Context,
    challenger_share: float,
    replicas: int,
    max_replicas_per_node: int | None,
    trial_timeout: float,
) -> None:
    """Serve the use case's Production version (and Staging for a share of requests)
    without a Dagster run: after a reboot, say. The versions are checked as the deployment
    asset checks them, and the endpoint keeps what it served if they fail."""
    from facilflow_assets.serving.rollout import DeploymentConfig, roll_out
    from facilflow_assets.use_case import load_use_case, use_case_path

    scope = context.obj["scope"]
    config = DeploymentConfig(
        challenger_share=challenger_share,
        num_replicas=replicas,
        max_replicas_per_node=max_replicas_per_node,
        trial_timeout_s=trial_timeout,
    )
    keys = ("storage", "mlflow", "feast", "serving", "events")
    with _quiet_libraries(), _resources(context, *keys) as resources, _failure_as_exit():
        served = roll_out(
            config,
            load_use_case(use_case_path(scope.use_case)),
            scope,
            resources.storage,
            resources.mlflow,
            resources.feast,
            resources.serving,
            resources.events,
            log=lambda line: click.echo(line, err=True),
        )
    challenger = served.challenger
    with_challenger = (
        f", version {challenger.version} for {challenger_share:.0%}" if challenger else ""
    )
    click.echo(f"{served.url} serves version {served.production.version}{with_challenger}")


@serve.command()
@_use_case_option
@click.pass_context
def status(context: click.Context) -> None:
    """The endpoint's versions, split, replicas and URL; exits 1 unless it can answer."""
    from facilflow_assets.serving.endpoint import Routing
    from facilflow_assets.serving.rollout import app_name, route_prefix
    from resources.serving import state_name

    scope = context.obj["scope"]
    with _quiet_libraries(), _resources(context, "serving") as resources:
        serving = resources.serving
        url = serving.endpoint_url(route_prefix(scope))
        details = serving.application_details(app_name(scope))
    click.echo(f"{scope.tenant}/{scope.use_case}  {url}")
    if details is None:
        click.echo("not running: no endpoint on the cluster (`facilflow serve start`)")
        context.exit(1)
    click.echo(
        f"  application  {state_name(details['status'])}  {details.get('message') or ''}".rstrip()
    )
    running = 0
    for name, deployment in details.get("deployments", {}).items():
        routing = Routing.model_validate(deployment["deployment_config"]["user_config"])
        click.echo(f"  production   version {routing.production.version}")
        if routing.challenger:
            share = f"{routing.challenger_share:.0%} of requests"
            click.echo(f"  challenger   version {routing.challenger.version}, {share}")
        replicas = deployment.get("replicas", [])
        running += sum(state_name(replica["state"]) == "RUNNING" for replica in replicas)
        states = ", ".join(
            f"{state_name(r['state'])} (pid {r.get('pid')}, node {r.get('node_ip')})"
            for r in replicas
        )
        click.echo(f"  {name}  {state_name(deployment['status'])}; replicas: {states or 'none'}")
    if state_name(details["status"]) != "RUNNING" or not running:
        context.exit(1)


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """The command's own lines only: no progress bars, no INFO lines, and none of the
    libraries' deprecation notes about each other (Ray Serve's about pydantic, Dagster's
    about its own resource context) while the command runs."""
    import logging
    import warnings

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import ray.serve  # noqa: F401  # configures its loggers on import

        for name in ("ray", "ray.serve"):
            logging.getLogger(name).setLevel(logging.WARNING)
        yield


@contextlib.contextmanager
def _failure_as_exit() -> Iterator[None]:
    """A refused or failed rollout as one line on stderr and exit status 1."""
    try:
        yield
    except RuntimeError as error:  # ModelLoadError and UpdateRefused among them
        raise click.ClickException(str(error)) from None


@serve.command()
@click.pass_context
def stop(context: click.Context) -> None:
    """Stop the endpoint and the local Ray head that `make demo` or a deployment started."""
    with _resources(context, "serving") as resources:
        stopped = resources.serving.stop_local_cluster()
    click.echo("stopped the local Ray head" if stopped else "no local Ray head to stop")


@main.group()
@_use_case_option
def runs() -> None:
    """MLflow runs of a use case's experiment."""


@runs.command("compare")
@click.option(
    "--metric",
    default=None,
    help="Rank by this metric: highest first, or lowest first for an error (rmse, mae, loss).",
)
@click.option("--top", default=10, show_default=True, help="How many runs to show.")
@click.option("--trials", is_flag=True, help="Show the searches' trials beside the runs.")
@click.option("--wide", is_flag=True, help="Every column, however wide the terminal.")
@click.pass_context
def compare(context: click.Context, metric: str | None, top: int, trials: bool, wide: bool) -> None:
    """The experiment's top training runs side by side: metrics, then parameters, in as
    many columns as the terminal fits."""
    import shutil

    from facilflow_assets.metadata import fit_columns, markdown_table
    from facilflow_assets.training.runs import NoSuchMetricError, compare_runs, lower_is_better

    with _resources(context, "mlflow") as resources:
        mlflow = resources.mlflow
        experiment = mlflow.ensure_experiment(context.obj["scope"])
        try:
            ascending = lower_is_better(metric) if metric else False
            table = compare_runs(
                mlflow.client(),
                experiment.experiment_id,
                metric,
                top,
                ascending=ascending,
                trials=trials,
            )
        except NoSuchMetricError as error:
            raise click.ClickException(str(error)) from None
    shown = table if wide else fit_columns(table, shutil.get_terminal_size().columns)
    left_out = table.width - shown.width
    click.echo(f"{experiment.name}: {table.height} run(s)")
    click.echo(markdown_table(shown))
    if left_out:
        click.echo(f"{left_out} more column(s): --wide shows them")


@main.group()
@_use_case_option
def models() -> None:
    """Versions of a use case's registered model: stages, requests, approvals, history.

    The acting user is the MLflow user (MLFLOW_TRACKING_USERNAME), else FACILFLOW_USER,
    else the operating-system user. Approvals are enforced only by an MLflow server running
    the facilflow-governance app, which authenticates that user; the embedded local store
    has no users, so there anyone can claim any name.
    """


class _Registry(NamedTuple):
    client: "MlflowClient"
    audit: "AuditTrail"
    name: str
    approvers: list[str]
    scope: "ModelScope"
    events: "EventsResource"


@contextlib.contextmanager
def _registry(context: click.Context) -> Iterator[_Registry]:
    """The registry of the use case's model; a GovernanceError becomes a CLI error."""
    from facilflow_assets.governance.audit import AuditTrail
    from facilflow_assets.governance.transitions import GovernanceError

    scope = context.obj["scope"]
    with _resources(context, "mlflow", "governance", "events") as resources:
        client = resources.mlflow.client()
        try:
            yield _Registry(
                client,
                AuditTrail(client, scope.audit_experiment_name),
                scope.registered_model_name,
                resources.governance.approvers_of(scope.registered_model_name),
                scope,
                resources.events,
            )
        except GovernanceError as error:
            raise click.ClickException(str(error)) from None


_REGISTERS_VERSIONS = "`make demo`, or the use case's training_job, registers and stages one"


@models.command("list")
@click.pass_context
def list_versions(context: click.Context) -> None:
    """Every version with its stage, aliases and pending request."""
    from facilflow_assets.governance.listing import versions_table
    from facilflow_assets.metadata import markdown_table

    with _registry(context) as registry:
        versions = versions_table(registry.client, registry.name)
        if versions.is_empty():
            click.echo(f"{registry.name} has no version yet: {_REGISTERS_VERSIONS}")
            return
        click.echo(f"{registry.name}:")
        click.echo(markdown_table(versions))


def _comment_option(command):
    return click.option("--comment", required=True, help="Why; kept in the audit trail.")(command)


@models.command()
@click.argument("version")
@_comment_option
@click.pass_context
def request(context: click.Context, version: str, comment: str) -> None:
    """Request that VERSION (in Staging) move to Production."""
    from facilflow_assets.environment import acting_user
    from facilflow_assets.governance.lifecycle_events import requested
    from facilflow_assets.governance.requests import request_production

    with _registry(context) as registry:
        made = request_production(
            registry.client, registry.audit, registry.name, version, acting_user(), comment
        )
        registry.events.record([requested(registry.scope, made, registry.approvers)])
        click.echo(
            f"requested {registry.name} version {version} for Production; approvers: "
            + ", ".join(registry.approvers)
        )


def _decide(context: click.Context, version: str, comment: str, approve: bool) -> None:
    from facilflow_assets.environment import acting_user
    from facilflow_assets.governance.requests import Decision, decide

    decision = Decision.APPROVED if approve else Decision.REJECTED
    with _registry(context) as registry:
        decide(
            registry.client,
            registry.audit,
            registry.name,
            version,
            acting_user(),
            decision,
            comment,
            registry.approvers,
        )
        click.echo(
            f"{decision} {registry.name} version {version}; approval_sensor acts on it next tick"
        )


@models.command()
@click.argument("version")
@_comment_option
@click.pass_context
def approve(context: click.Context, version: str, comment: str) -> None:
    """Approve the pending request of VERSION (designated approvers, not the requester)."""
    _decide(context, version, comment, approve=True)


@models.command()
@click.argument("version")
@_comment_option
@click.pass_context
def reject(context: click.Context, version: str, comment: str) -> None:
    """Reject the pending request of VERSION; it stays where it is."""
    _decide(context, version, comment, approve=False)


@models.command()
@click.option(
    "--at",
    "moment",
    default=None,
    help="Also say which version was in Production at this time (ISO 8601, UTC if no zone).",
)
@click.pass_context
def history(context: click.Context, moment: str | None) -> None:
    """Every request, decision and transition of the model, oldest first."""
    from facilflow_assets.governance.audit import production_at
    from facilflow_assets.governance.listing import history_table
    from facilflow_assets.metadata import markdown_table
    from facilflow_assets.training.config import parse_utc

    with _registry(context) as registry:
        records = registry.audit.history(registry.name)
        if not records:
            click.echo(f"{registry.name} has no recorded transition yet: {_REGISTERS_VERSIONS}")
            return
        click.echo(markdown_table(history_table(records)))
        if moment:
            at = parse_utc(moment, "--at")
            version = production_at(records, at)
            click.echo(f"\nIn Production at {at.isoformat()}: {version or 'no version'}")


@models.command()
@_comment_option
@click.pass_context
def rollback(context: click.Context, comment: str) -> None:
    """Request Production back for the version that held it before the current one.

    A rollback is a transition like any other: a designated approver who did not request
    it approves it, and the promotion job carries it out.
    """
    from facilflow_assets.environment import acting_user
    from facilflow_assets.governance.lifecycle_events import requested
    from facilflow_assets.governance.requests import request_production
    from facilflow_assets.governance.transitions import rollback_target

    with _registry(context) as registry:
        records = registry.audit.history(registry.name)
        target = rollback_target(registry.client, records, registry.name)
        made = request_production(
            registry.client, registry.audit, registry.name, target, acting_user(), comment
        )
        registry.events.record([requested(registry.scope, made, registry.approvers)])
        click.echo(
            f"requested {registry.name} version {target} back in Production (a rollback); "
            f"approvers: {', '.join(registry.approvers)}"
        )


@main.group()
def events() -> None:
    """Lifecycle events: the outbox, the relay to Kafka, and the topic."""


@contextlib.contextmanager
def _events_resource(context: click.Context):
    with _resources(context, "events") as resources:
        yield resources.events


@events.command()
@click.option("--follow", is_flag=True, help="Keep reading as events arrive (Ctrl-C stops).")
@click.option("--new", "only_new", is_flag=True, help="Only events that arrive from now on.")
@click.option("--type", "event_types", multiple=True, help="Only events of this type.")
@click.option("--json", "as_json", is_flag=True, help="One envelope per line, as published.")
@click.pass_context
def tail(
    context: click.Context, follow: bool, only_new: bool, event_types: tuple, as_json: bool
) -> None:
    """Read the lifecycle topic: each event once, oldest first. With no broker configured
    (KAFKA_BOOTSTRAP_SERVERS), read the outbox, where every event is recorded first."""
    from facilflow_assets.events.envelope import EventError
    from facilflow_assets.events.reader import EventReader, OutboxReader

    with _events_resource(context) as resource:
        if resource.bootstrap_servers:
            try:
                reader = EventReader(resource.bootstrap_servers, resource.topic, not only_new)
            except EventError as error:
                raise click.ClickException(str(error)) from None
        else:
            click.echo(
                "no broker configured (KAFKA_BOOTSTRAP_SERVERS): reading the outbox, every "
                "event recorded, published or still waiting",
                err=True,
            )
            reader = OutboxReader(resource.outbox(), not only_new)
        with reader, contextlib.suppress(KeyboardInterrupt):
            for event in reader.events(follow=follow):
                if event_types and event.type not in event_types:
                    continue
                if as_json:
                    click.echo(event.to_json())
                else:
                    where = f"{event.model} v{event.version}" if event.version else event.model
                    click.echo(
                        f"{event.time:%Y-%m-%d %H:%M:%S} {event.type:<27} {where}  "
                        + ", ".join(f"{k}={v}" for k, v in event.payload.items())
                    )
        if reader.skipped:
            click.echo(f"skipped {reader.skipped} message(s): {reader.first_problem}", err=True)


@events.command()
@click.pass_context
def relay(context: click.Context) -> None:
    """Publish the events waiting in the outbox now."""
    with _events_resource(context) as resource:
        report = resource.relay()
        if report is None:
            waiting = resource.outbox().waiting_count()
            raise click.ClickException(f"no broker configured; {waiting} event(s) wait")
    click.echo(f"published {report.published}, {report.waiting} waiting")
    if report.error:
        raise click.ClickException(f"{report.failed} not delivered: {report.error}")


@events.command()
@click.option(
    "--since", required=True, help="Events stored from this time on (ISO 8601, UTC if no zone)."
)
@click.pass_context
def republish(context: click.Context, since: str) -> None:
    """Send the tenant's published events again, after a broker lost messages it had
    acknowledged."""
    from facilflow_assets.training.config import parse_utc

    with _events_resource(context) as resource:
        count = resource.outbox().republish(parse_utc(since, "--since"), context.obj["tenant"])
    click.echo(f"{count} event(s) will be sent again by the relay; consumers drop repeats")
