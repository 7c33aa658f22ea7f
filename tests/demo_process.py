"""`python -m tests.demo_process HOME`: the demo's lifecycle (with the suite's smaller
search) in a process of its own. A test runs it for a use case other than the suite's:
FACILFLOW_USE_CASE is read once per process, when the definitions load. The resources are
FACILFLOW_ENV's, the instance DAGSTER_HOME's; the summary goes to HOME/demo-summary.json."""

import sys
from pathlib import Path

import dagster as dg

from facilflow_assets.definitions import all_asset_checks, all_assets
from facilflow_assets.demo import run_demo
from facilflow_assets.environment import get_environment
from facilflow_assets.resource_map import build_resources
from tests.conftest import DEMO_TRAINING


def main(home: Path) -> None:
    resources = build_resources(get_environment(), home=home)
    with dg.DagsterInstance.get() as instance:
        run_demo([*all_assets, *all_asset_checks], resources, instance, home, DEMO_TRAINING)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
