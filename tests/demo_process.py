"""`python -m tests.demo_process HOME TENANT USE_CASE`: the demo's lifecycle of one use case
for a tenant of its own (with the suite's smaller search), in a process of its own. The
resources are FACILFLOW_ENV's, the instance DAGSTER_HOME's; the summary goes to
HOME/demo-summary.json."""

import sys
from pathlib import Path

import dagster as dg

from facilflow_assets.demo.run import run_demo
from facilflow_assets.environment import get_environment
from facilflow_assets.resource_map import build_resources
from facilflow_assets.tenants import TenantSpec
from tests.conftest import DEMO_PLAN


def main(home: Path, tenant: str, use_case: str) -> None:
    resources = build_resources(get_environment(), home=home)
    spec = TenantSpec(description="a tenant of one test", use_cases=[use_case])
    plan = DEMO_PLAN.model_copy(update={"walkthrough": use_case})
    with dg.DagsterInstance.get() as instance:
        run_demo(resources, instance, home, plan, tenant, spec)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
