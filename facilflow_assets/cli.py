"""The `facilflow` command line."""

import contextlib
from pathlib import Path

import click
import dagster as dg
import polars as pl


@click.group()
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Local working directory (default: .facilflow in the project).",
)
@click.pass_context
def main(context: click.Context, home: Path | None) -> None:
    """FacilFlow: the ML lifecycle as Dagster assets."""
    context.obj = {"home": home}


@main.command()
@click.pass_context
def demo(context: click.Context) -> None:
    """Materialize every asset on the embedded defaults and print a summary.

    Runs are recorded in the local instance `<home>/dagster_home`, the one `make dev`
    opens, so the Dagster UI shows them afterwards.
    """
    from facilflow_assets.definitions import all_asset_checks, all_assets
    from facilflow_assets.demo import SUMMARY_FILE, facts_table, run_demo, summary_table
    from facilflow_assets.environment import LOCAL_HOME, Environment
    from facilflow_assets.metadata import markdown_table
    from facilflow_assets.resource_map import build_resources

    home = context.obj["home"] or LOCAL_HOME
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    resources = build_resources(Environment.LOCAL, home=home)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        outcome = run_demo([*all_asset_checks, *all_assets], resources, instance, home)
    click.echo(summary_table(outcome.assets))
    click.echo("\n" + facts_table(outcome.model))
    governance = {k: v for k, v in outcome.governance.items() if k != "history"}
    click.echo("\n" + facts_table(governance))
    click.echo("\n" + markdown_table(pl.DataFrame(outcome.governance["history"])))
    click.echo(f"\nSummary written to {home / SUMMARY_FILE}")


@main.group()
def runs() -> None:
    """MLflow runs of the use case's experiment."""


@runs.command("compare")
@click.option("--metric", default=None, help="Rank by this metric, highest first.")
@click.option("--top", default=10, show_default=True, help="How many runs to show.")
@click.pass_context
def compare(context: click.Context, metric: str | None, top: int) -> None:
    """The experiment's top runs side by side: parameters and metrics in one table."""
    from facilflow_assets.environment import get_environment
    from facilflow_assets.metadata import markdown_table
    from facilflow_assets.resource_map import build_resources
    from facilflow_assets.training.runs import NoSuchMetricError, compare_runs

    configured = build_resources(get_environment(), home=context.obj["home"])
    # Resolves EnvVar settings outside a Dagster run, as a run would.
    with dg.build_resources({"mlflow": configured["mlflow"]}) as resources:
        mlflow = resources.mlflow
        experiment = mlflow.ensure_experiment()
        try:
            table = compare_runs(mlflow.client(), experiment.experiment_id, metric, top)
        except NoSuchMetricError as error:
            raise click.ClickException(str(error)) from None
    click.echo(f"{experiment.name}: {table.height} run(s)")
    click.echo(markdown_table(table))


@main.group()
def models() -> None:
    """Versions of the use case's registered model: stages, requests, approvals, history.

    The acting user is the MLflow user (MLFLOW_TRACKING_USERNAME), else FACILFLOW_USER,
    else the operating-system user.
    """


@contextlib.contextmanager
def _registry(context: click.Context):
    """The client, audit trail, model name and approvers; GovernanceError as a CLI error."""
    from facilflow_assets.environment import get_environment
    from facilflow_assets.governance.audit import AuditTrail
    from facilflow_assets.governance.transitions import GovernanceError
    from facilflow_assets.resource_map import build_resources

    configured = build_resources(get_environment(), home=context.obj["home"])
    keys = ("mlflow", "tenant", "governance")
    with dg.build_resources({key: configured[key] for key in keys}) as resources:
        client = resources.mlflow.client()
        audit = AuditTrail(client, resources.tenant.audit_experiment_name)
        try:
            yield client, audit, resources.tenant.registered_model_name, resources.governance
        except GovernanceError as error:
            raise click.ClickException(str(error)) from None


@models.command("list")
@click.pass_context
def list_versions(context: click.Context) -> None:
    """Every version with its stage, aliases and pending request."""
    from facilflow_assets.governance.listing import versions_table
    from facilflow_assets.metadata import markdown_table

    with _registry(context) as (client, _, name, _):
        click.echo(f"{name}:")
        click.echo(markdown_table(versions_table(client, name)))


def _comment_option(command):
    return click.option("--comment", required=True, help="Why; kept in the audit trail.")(command)


@models.command()
@click.argument("version")
@_comment_option
@click.pass_context
def request(context: click.Context, version: str, comment: str) -> None:
    """Request that VERSION (in Staging) move to Production."""
    from facilflow_assets.environment import acting_user
    from facilflow_assets.governance.requests import request_production

    with _registry(context) as (client, audit, name, governance):
        request_production(client, audit, name, version, acting_user(), comment)
        click.echo(
            f"requested {name} version {version} for Production; approvers: "
            + ", ".join(governance.approver_list)
        )


def _decide(context: click.Context, version: str, comment: str, approve: bool) -> None:
    from facilflow_assets.environment import acting_user
    from facilflow_assets.governance.requests import Decision, decide

    decision = Decision.APPROVED if approve else Decision.REJECTED
    with _registry(context) as (client, _, name, governance):
        decide(client, name, version, acting_user(), decision, comment, governance.approver_list)
        click.echo(f"{decision} {name} version {version}; approval_sensor acts on it next tick")


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
@click.option("--at", "moment", default=None, help="Also say which version was in Production "
              "at this time (ISO 8601, UTC if no zone).")  # fmt: skip
@click.pass_context
def history(context: click.Context, moment: str | None) -> None:
    """Every request, decision and transition of the model, oldest first."""
    from facilflow_assets.governance.audit import production_at
    from facilflow_assets.governance.listing import history_table
    from facilflow_assets.metadata import markdown_table
    from facilflow_assets.training.config import parse_utc

    with _registry(context) as (_, audit, name, _):
        records = audit.history(name)
        click.echo(markdown_table(history_table(records)))
        if moment:
            at = parse_utc(moment, "--at")
            version = production_at(records, at)
            click.echo(f"\nIn Production at {at.isoformat()}: {version or 'no version'}")


@models.command()
@_comment_option
@click.pass_context
def rollback(context: click.Context, comment: str) -> None:
    """Return Production to the version that held it before the current one."""
    from facilflow_assets.environment import acting_user
    from facilflow_assets.governance.transitions import rollback as roll_back

    with _registry(context) as (client, audit, name, _):
        version = roll_back(client, audit, name, acting_user(), comment)
        click.echo(f"{name} version {version} is in Production again")
