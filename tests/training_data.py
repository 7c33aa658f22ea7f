"""A small synthetic training set with the real one's layout, for fast training tests."""

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

START = datetime(2013, 1, 1, tzinfo=UTC)


def synthetic_training_set(rows: int = 6000, seed: int = 0) -> pl.DataFrame:
    """Flights over 2013 whose delay depends on two features, plus noise."""
    rng = np.random.default_rng(seed)
    wind = rng.gamma(2.0, 5.0, rows)
    carrier_rate = rng.uniform(0.1, 0.4, rows)
    hour = rng.integers(5, 23, rows)
    risk = 0.08 * wind + 6 * carrier_rate + 0.1 * (hour - 12) - 3
    delayed = (rng.uniform(size=rows) < 1 / (1 + np.exp(-risk))).astype(np.int32)
    minutes = np.sort(rng.integers(0, 365 * 24 * 60, rows))
    return pl.DataFrame(
        {
            "flight_id": [f"f{i}" for i in range(rows)],
            "carrier_code": rng.choice(["AA", "B6", "DL", "UA"], rows),
            "event_timestamp": [START + timedelta(minutes=int(m)) for m in minutes],
            "is_delayed": delayed,
            "weather_hourly__wind_speed_mph": wind,
            "carrier_history__carrier_delay_rate_7d": carrier_rate,
            "flight_calendar__departure_hour": hour,
            "weather_hourly__noise": rng.normal(size=rows),
        }
    ).with_columns(pl.col("event_timestamp").dt.cast_time_unit("us"))
