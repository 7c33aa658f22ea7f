"""Sources: the parquet feature tables FacilFlow's `features` assets write.

Paths are relative to this repository, i.e. the local working directory `.facilflow/`;
Dagster points each source at its own working directory before applying.
"""

from feast import FileSource

from facilflow_assets.features.flight_delay import FLIGHT_DELAY_SPEC


def feature_table_source(table: str, field_mapping: dict[str, str] | None = None) -> FileSource:
    spec = FLIGHT_DELAY_SPEC.table(table)
    return FileSource(
        name=f"{table}_source",
        path=f"../.facilflow/features/{table}.parquet",
        timestamp_field=spec.timestamp_column,
        field_mapping=field_mapping or {},
        description=spec.description,
        tags={"use_case": "flight_delay", "asset": f"features/{table}"},
    )


# The weather table is keyed by the airport that observed it; flights call it their origin.
weather_hourly_source = feature_table_source(
    "weather_hourly", field_mapping={"airport_code": "origin_airport_code"}
)
carrier_history_source = feature_table_source("carrier_history")
route_history_source = feature_table_source("route_history")
plane_history_source = feature_table_source("plane_history")
plane_profile_source = feature_table_source("plane_profile")
flight_calendar_source = feature_table_source("flight_calendar")
