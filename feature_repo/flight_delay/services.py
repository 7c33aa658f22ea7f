"""Feature services: the versioned feature sets models are trained and served with."""

from feast import FeatureService

from flight_delay.on_demand import delay_context
from flight_delay.views import (
    carrier_history,
    flight_calendar,
    plane_history,
    plane_profile,
    route_history,
    weather_hourly,
)

flight_delay_v1 = FeatureService(
    name="flight_delay_v1",
    features=[
        weather_hourly,
        carrier_history,
        route_history,
        plane_history,
        plane_profile,
        flight_calendar,
        delay_context,
    ],
    description="Every feature of the first flight-delay model.",
    tags={"use_case": "flight_delay", "version": "1"},
    owner="ml-platform@facilflow.dev",
)
