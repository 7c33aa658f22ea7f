"""The `facilflow` command line."""

import os
from pathlib import Path

import click
import dagster as dg


@click.group()
def main() -> None:
    """FacilFlow: the ML lifecycle as Dagster assets."""


@main.command()
def demo() -> None:
    """Materialize every asset on the embedded defaults and print a summary."""
    from facilflow_assets.definitions import all_assets, defs
    from facilflow_assets.demo import SUMMARY_FILE, run_demo, summary_table
    from facilflow_assets.environment import LOCAL_HOME

    home = LOCAL_HOME
    os.environ.setdefault("DAGSTER_HOME", str(home / "dagster_home"))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    with dg.DagsterInstance.get() as instance:
        summary = run_demo(all_assets, defs.resources, instance, home)
    click.echo(summary_table(summary))
    click.echo(f"\nSummary written to {home / SUMMARY_FILE}")
