"""Feature views, one per feature table; fields come from the feature spec."""

from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource
from feast.types import from_value_type

from facilflow_assets.features.feast_schema import feature_fields
from facilflow_assets.features.flight_delay import FLIGHT_DELAY_SPEC
from flight_delay.entities import carrier, flight, origin, plane, route
from flight_delay.sources import (
    carrier_history_source,
    flight_calendar_source,
    plane_history_source,
    plane_profile_source,
    route_history_source,
    weather_hourly_source,
)


def feature_table_view(
    source: FileSource, entities: list[Entity], ttl: timedelta, table: str
) -> FeatureView:
    spec = FLIGHT_DELAY_SPEC.table(table)
    return FeatureView(
        name=table,
        entities=entities,
        ttl=ttl,
        # Join keys are declared, not left to inference, which can miss a mapped key.
        schema=[*join_key_fields(entities), *feature_fields(spec)],
        source=source,
        online=True,
        description=spec.description,
        tags={"use_case": "flight_delay", "source_model": spec.source.model},
        owner="ml-platform@facilflow.dev",
    )


def join_key_fields(entities: list[Entity]) -> list[Field]:
    return [Field(name=e.join_key, dtype=from_value_type(e.value_type)) for e in entities]


weather_hourly = feature_table_view(
    weather_hourly_source, [origin], timedelta(hours=3), "weather_hourly"
)
carrier_history = feature_table_view(
    carrier_history_source, [carrier], timedelta(days=2), "carrier_history"
)
route_history = feature_table_view(
    route_history_source, [route], timedelta(days=30), "route_history"
)
plane_history = feature_table_view(
    plane_history_source, [plane], timedelta(days=1), "plane_history"
)
# A plane's registry entry does not expire: a zero TTL means no limit.
plane_profile = feature_table_view(plane_profile_source, [plane], timedelta(0), "plane_profile")
flight_calendar = feature_table_view(
    flight_calendar_source, [flight], timedelta(days=8), "flight_calendar"
)
