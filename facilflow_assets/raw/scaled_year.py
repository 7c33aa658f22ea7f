"""The flight year made larger: each copy adds new flights, planes and origin airports.

Copy `r` of the year (the original is copy 0) flies the same schedule from its own origin
airports (`EWR` becomes `EWR3` in copy 3, with the original's location and weather) with
planes of its own (`N14228` becomes `N14228R3`, with the original's registry row) under
flight numbers shifted by `r * FLIGHT_NUMBER_STRIDE`. So flights, flight ids, planes,
routes, origin airports and hours of weather all grow with the factor, and every copy's
features and labels are the original's, which makes a scaled run checkable.
"""

from collections.abc import Callable

import polars as pl

FLIGHT_NUMBER_STRIDE = 10_000  # above every flight number of the year (8,500 at most)


def scale_year(tables: dict[str, pl.DataFrame], factor: int) -> dict[str, pl.DataFrame]:
    """The raw tables (flights, weather, planes, airports, airlines) `factor` times over."""
    if factor < 1:
        raise ValueError(f"the scale factor must be at least 1, not {factor}")
    if tables["flights"]["flight"].max() >= FLIGHT_NUMBER_STRIDE:  # type: ignore[operator]
        raise ValueError(f"flight numbers must stay below {FLIGHT_NUMBER_STRIDE} to be shifted")
    copies = range(1, factor)
    flights, airports = tables["flights"], tables["airports"]
    origin_airports = airports.filter(pl.col("faa").is_in(flights["origin"].unique()))
    return {
        "flights": pl.concat([flights, *_copies(flights, copies, _FLIGHT_COPY)]),
        "weather": pl.concat([tables["weather"], *_copies(tables["weather"], copies, _AT_ORIGIN)]),
        "planes": pl.concat([tables["planes"], *_copies(tables["planes"], copies, _PLANE_COPY)]),
        "airports": pl.concat([airports, *_copies(origin_airports, copies, {"faa": _origin})]),
        "airlines": tables["airlines"],
    }


def _origin(column: pl.Expr, r: int) -> pl.Expr:
    return column + str(r)


def _tail_number(column: pl.Expr, r: int) -> pl.Expr:
    return column + f"R{r}"


def _flight_number(column: pl.Expr, r: int) -> pl.Expr:
    return column + r * FLIGHT_NUMBER_STRIDE


_FLIGHT_COPY = {"origin": _origin, "tailnum": _tail_number, "flight": _flight_number}
_AT_ORIGIN = {"origin": _origin}
_PLANE_COPY = {"tailnum": _tail_number}


def _copies(
    frame: pl.DataFrame, copies: range, changes: dict[str, Callable[[pl.Expr, int], pl.Expr]]
) -> list[pl.DataFrame]:
    """Copy `r` of `frame` for each `r` of `copies`, its columns changed as `changes` say."""
    return [
        frame.with_columns(
            change(pl.col(column), r).alias(column) for column, change in changes.items()
        )
        for r in copies
    ]
