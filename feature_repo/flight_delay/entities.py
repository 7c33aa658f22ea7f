"""Entities: what the flight-delay features are about."""

from feast import Entity, ValueType


def keyed_by(name: str, join_key: str, description: str) -> Entity:
    """An entity with one text join key, as every flight-delay entity has."""
    return Entity(
        name=name,
        join_keys=[join_key],
        value_type=ValueType.STRING,
        description=description,
        tags={"use_case": "flight_delay"},
    )


origin = keyed_by("origin", "origin_airport_code", "New York departure airport (EWR, JFK, LGA).")
carrier = keyed_by("carrier", "carrier_code", "Airline by its two-letter code.")
route = keyed_by("route", "route", "Origin and destination, e.g. 'JFK-LAX'.")
plane = keyed_by("plane", "tail_number", "Aircraft by tail number.")
flight = keyed_by("flight", "flight_id", "One scheduled departure.")
