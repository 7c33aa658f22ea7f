"""Entities: what the flight-delay features are about."""

from feast import Entity, ValueType

TAGS = {"use_case": "flight_delay"}

origin = Entity(
    name="origin",
    join_keys=["origin_airport_code"],
    value_type=ValueType.STRING,
    description="New York departure airport (EWR, JFK, LGA).",
    tags=TAGS,
)
carrier = Entity(
    name="carrier",
    join_keys=["carrier_code"],
    value_type=ValueType.STRING,
    description="Airline by its two-letter code.",
    tags=TAGS,
)
route = Entity(
    name="route",
    join_keys=["route"],
    value_type=ValueType.STRING,
    description="Origin and destination, e.g. 'JFK-LAX'.",
    tags=TAGS,
)
plane = Entity(
    name="plane",
    join_keys=["tail_number"],
    value_type=ValueType.STRING,
    description="Aircraft by tail number.",
    tags=TAGS,
)
flight = Entity(
    name="flight",
    join_keys=["flight_id"],
    value_type=ValueType.STRING,
    description="One scheduled departure.",
    tags=TAGS,
)
