"""Where FacilFlow keeps its files: raw and feature parquet, the DuckDB warehouse."""

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field


class StorageResource(ConfigurableResource):
    """A working directory holding every file the lifecycle writes.

    Locally this is `.facilflow/`; in production a mounted volume named by FACILFLOW_HOME.
    """

    home: str = Field(description="Working directory for warehouse, parquet and artifacts.")

    @property
    def root(self) -> Path:
        return Path(self.home).resolve()

    @property
    def raw_dir(self) -> Path:
        return self.root / "raw"

    @property
    def warehouse_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    def raw_path(self, table: str) -> Path:
        return self.raw_dir / f"{table}.parquet"
