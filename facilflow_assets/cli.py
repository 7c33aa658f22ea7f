"""The `facilflow` command line."""

from pathlib import Path

import click
import dagster as dg


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
    from facilflow_assets.demo import SUMMARY_FILE, model_table, run_demo, summary_table
    from facilflow_assets.environment import LOCAL_HOME, Environment
    from facilflow_assets.resource_map import build_resources

    home = context.obj["home"] or LOCAL_HOME
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    resources = build_resources(Environment.LOCAL, home=home)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        summary, model = run_demo([*all_assets, *all_asset_checks], resources, instance, home)
    click.echo(summary_table(summary))
    click.echo("\n" + model_table(model))
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
