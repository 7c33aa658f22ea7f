"""The `facilflow` command line."""

import click
import dagster as dg


@click.group()
def main() -> None:
    """FacilFlow: the ML lifecycle as Dagster assets."""


@main.command()
def demo() -> None:
    """Materialize every asset on the embedded defaults and print a summary.

    Runs are recorded in the local instance `.facilflow/dagster_home`, the one `make dev`
    opens, so the Dagster UI shows them afterwards.
    """
    from facilflow_assets.definitions import all_assets
    from facilflow_assets.demo import SUMMARY_FILE, run_demo, summary_table
    from facilflow_assets.environment import LOCAL_HOME, Environment
    from facilflow_assets.resource_map import build_resources

    dagster_home = LOCAL_HOME / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        summary = run_demo(all_assets, build_resources(Environment.LOCAL), instance, LOCAL_HOME)
    click.echo(summary_table(summary))
    click.echo(f"\nSummary written to {LOCAL_HOME / SUMMARY_FILE}")
