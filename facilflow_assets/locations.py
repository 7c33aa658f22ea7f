"""The code locations of workspace.yaml and of the Helm values' user deployments, by name:
`shared` (the warehouse and the event relay) and one per tenant of tenants.yaml.

This module holds nothing but the lookup, so no tenant name can meet another attribute;
each location is built when Dagster asks for it.
"""

import functools


@functools.cache
def _location(name: str):
    from facilflow_assets import definitions
    from facilflow_assets.tenants import SHARED_LOCATION, load_tenants

    if name == SHARED_LOCATION:
        return definitions.shared_location()
    tenants = load_tenants()
    if name not in tenants:
        raise AttributeError(
            f"no code location '{name}': it is neither '{SHARED_LOCATION}' nor a tenant of "
            f"facilflow_assets/tenants.yaml ({', '.join(tenants)})"
        )
    return definitions.tenant_location(name)


def __getattr__(name: str):
    if name.startswith("__"):  # Python's own lookups (__path__, __wrapped__, ...)
        raise AttributeError(name)
    return _location(name)
