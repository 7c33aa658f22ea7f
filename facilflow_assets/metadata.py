"""Materialization metadata shared by the assets that write tables."""

from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

import dagster as dg
import polars as pl

_POLARS_TO_TABLE_TYPE = {
    pl.String: "string",
    pl.Int32: "int",
    pl.Int64: "int",
    pl.Float64: "float",
    pl.Boolean: "bool",
    pl.Datetime: "timestamp",
    pl.Date: "date",
}


def table_schema(frame: pl.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, _POLARS_TO_TABLE_TYPE.get(dtype.base_type(), str(dtype)))
            for name, dtype in frame.schema.items()
        ]
    )


def table_metadata(frame: pl.DataFrame, path: Path) -> dict[str, dg.MetadataValue]:
    """Row count, schema, a preview and the file location of a written table."""
    return {
        "dagster/row_count": dg.MetadataValue.int(frame.height),
        "dagster/column_schema": dg.MetadataValue.table_schema(table_schema(frame)),
        "path": dg.MetadataValue.path(str(path)),
        "preview": dg.MetadataValue.md(markdown_table(frame.head(5))),
    }


def markdown_table(frame: pl.DataFrame) -> str:
    """A frame as a GitHub-flavoured markdown table, for the Dagster UI and the terminal."""
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([header, rule, *rows])


def fit_columns(frame: pl.DataFrame, width: int) -> pl.DataFrame:
    """The frame's leading columns that fit `width` characters as a markdown table (at
    least the first)."""
    kept, used = [], 1
    for column in frame.columns:
        cells = [column, *(_cell(v) for v in frame[column].to_list())]
        used += max(map(len, cells)) + 3
        if kept and used > width:
            break
        kept.append(column)
    return frame.select(kept)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def materialized_metadata(result: dg.ExecuteInProcessResult, key: str) -> dict[str, object]:
    """The metadata values `result` materialized for the asset `key` (a user string)."""
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        if materialization.asset_key.to_user_string() == key:
            return {name: value.value for name, value in materialization.metadata.items()}
    return {}


_Kind = TypeVar("_Kind")


def metadata_value(metadata: Mapping[str, object], name: str, kind: type[_Kind]) -> _Kind:
    """The entry `name` of `metadata` (as `materialized_metadata` reads it), of type `kind`."""
    value = metadata[name]
    if not isinstance(value, kind):
        raise TypeError(f"metadata '{name}' is {value!r}, not a {kind.__name__}")
    return value


def metadata_number(metadata: Mapping[str, object], name: str) -> float:
    """The number `name` of `metadata` (an int or a float, as it was recorded)."""
    value = metadata[name]
    if not isinstance(value, int | float):
        raise TypeError(f"metadata '{name}' is {value!r}, not a number")
    return value
