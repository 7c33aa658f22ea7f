"""The flight year made larger: each copy adds new flights, planes and origin airports.

Copy `r` of the year (the original is copy 0) flies the same schedule from its own origin
airports (`EWR` becomes `EWR3` in copy 3, with the original's location and weather) with
planes of its own (`N14228` becomes `N14228R3`, with the original's registry row) under
flight numbers shifted by `r * FLIGHT_NUMBER_STRIDE`. So flights, flight ids, planes,
routes, origin airports and hours of weather all grow with the factor, and every copy's
features and labels are the original's, which makes a scaled run checkable.
"""

import polars as pl

FLIGHT_NUMBER_STRIDE = 10_000  # above every flight number of the year (8,500 at most)


def scale_year(tables: dict[str, pl.DataFrame], factor: int) -> dict[str, pl.DataFrame]:
    """The raw tables (flights, weather, planes, airports, airlines) `factor` times over."""
    if factor < 1:
        raise ValueError(f"the scale factor must be at least 1, not {factor}")
    if tables["flights"]["flight"].max() >= FLIGHT_NUMBER_STRIDE:  # type: ignore[operator]
        raise ValueError(f"flight numbers must stay below {FLIGHT_NUMBER_STRIDE} to be shifted")
    copies = range(1, factor)
    origins = tables["flights"]["origin"].unique()
    return {
        "flights": _with_copies(tables["flights"], copies, _flights_copy),
        "weather": _with_copies(tables["weather"], copies, _renamed("origin")),
        "planes": _with_copies(tables["planes"], copies, _planes_copy),
        "airports": _with_copies(
            tables["airports"],
            copies,
            lambda frame, r: _renamed("faa")(frame.filter(pl.col("faa").is_in(origins)), r),
        ),
        "airlines": tables["airlines"],
    }


def _with_copies(frame: pl.DataFrame, copies: range, copy) -> pl.DataFrame:
    return pl.concat([frame, *(copy(frame, r) for r in copies)])


def _renamed(column: str):
    def copy(frame: pl.DataFrame, r: int) -> pl.DataFrame:
        return frame.with_columns(pl.col(column) + str(r))

    return copy


def _flights_copy(flights: pl.DataFrame, r: int) -> pl.DataFrame:
    return flights.with_columns(
        pl.col("origin") + str(r),
        pl.col("tailnum") + f"R{r}",
        pl.col("flight") + r * FLIGHT_NUMBER_STRIDE,
    )


def _planes_copy(planes: pl.DataFrame, r: int) -> pl.DataFrame:
    return planes.with_columns(pl.col("tailnum") + f"R{r}")
