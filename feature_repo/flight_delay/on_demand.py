"""On-demand features: computed at request time from other views' values."""

import pandas as pd
from feast import Field
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64

from flight_delay.views import carrier_history, route_history


@on_demand_feature_view(
    sources=[carrier_history, route_history],
    schema=[Field(name="route_vs_carrier_delay_rate", dtype=Float64)],
    mode="pandas",
    description="How much more often this route is late than the carrier as a whole.",
    tags={"use_case": "flight_delay"},
)
def delay_context(inputs: pd.DataFrame) -> pd.DataFrame:
    carrier_rate = inputs["carrier_delay_rate_7d"].astype("float64")
    route_rate = inputs["route_delay_rate_30d"].astype("float64")
    ratio = (route_rate / carrier_rate).where(carrier_rate != 0)
    return pd.DataFrame({"route_vs_carrier_delay_rate": ratio})
