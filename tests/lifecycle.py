"""A use case's lifecycle as the tests take it apart: its definitions, and each asset,
check, job and sensor by its short name."""

import functools

import dagster as dg

from facilflow_assets.asset_keys import UseCaseKeys, op_name
from facilflow_assets.definitions import use_case_definitions
from facilflow_assets.scope import ModelScope
from facilflow_assets.use_case import load_use_case, use_case_path


class UseCaseDefs:
    def __init__(self, use_case: str = "flight_delay", tenant: str = "demo"):
        self.use_case = load_use_case(use_case_path(use_case))
        self.scope = ModelScope(tenant, use_case)
        self.keys = UseCaseKeys(self.scope)
        self.defs = use_case_definitions(self.use_case, self.scope)

    def asset(self, name: str) -> dg.AssetsDefinition:
        """The asset whose key ends in `name` ('trained_model', 'weather_hourly')."""
        [found] = [a for a in self.defs.assets if a.key.path[-1] == name]
        return found

    def check(self, name: str) -> dg.AssetChecksDefinition:
        [found] = [
            c
            for c in self.defs.asset_checks
            if c.check_specs and any(spec.name == name for spec in c.check_specs)
        ]
        return found

    def job(self, name: str, resources: dict[str, object]) -> dg.JobDefinition:
        """The use case's job `name` ('promotion_job'), resolved against its assets and
        bound to `resources`; the resources its steps do not use may be left out."""
        definitions = [*self.defs.assets, *self.defs.asset_checks]
        used = {key for d in definitions for key in d.required_resource_keys}
        missing = used - set(resources) - {"io_manager"}
        unused = {key: dg.ResourceDefinition.none_resource() for key in missing}
        bound = dg.Definitions.merge(self.defs, dg.Definitions(resources={**unused, **resources}))
        return bound.resolve_job_def(self.scope.definition_name(name))

    def sensor(self, name: str) -> dg.SensorDefinition:
        """The use case's sensor `name` ('approval_sensor'), to call with a context."""
        wanted = self.scope.definition_name(name)
        [found] = [sensor for sensor in self.defs.sensors if sensor.name == wanted]
        return found

    def op(self, name: str) -> str:
        """Where a run's config for the asset `name` goes."""
        return op_name(self.asset(name).key)

    def key(self, name: str) -> str:
        """The asset's key as the UI and metadata show it."""
        return self.asset(name).key.to_user_string()


@functools.cache
def lifecycle(use_case: str = "flight_delay", tenant: str = "demo") -> UseCaseDefs:
    return UseCaseDefs(use_case, tenant)
