"""The Feast objects of the code location's use case (FACILFLOW_USE_CASE, flight_delay by
default), built from its file under facilflow_assets/use_cases/. `feast apply` and Dagster's
feast_registry asset both find them here."""

from facilflow_assets.features.feast_objects import feast_objects
from facilflow_assets.use_case import current_use_case

globals().update({f"{type(o).__name__}_{o.name}": o for o in feast_objects(current_use_case())})
