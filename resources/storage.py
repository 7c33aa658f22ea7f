"""Where FacilFlow keeps its files: raw and feature parquet, the DuckDB warehouse."""

from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import polars.selectors as cs
from dagster import ConfigurableResource
from pydantic import Field

from facilflow_assets.scope import ModelScope


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
    def mlflow_dir(self) -> Path:
        return self.root / "mlflow"

    @property
    def warehouse_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    def raw_path(self, table: str) -> Path:
        return self.raw_dir / f"{table}.parquet"

    def files(self, scope: ModelScope) -> "UseCaseFiles":
        """The files of one tenant's use case, in a folder of their own."""
        return UseCaseFiles(self.root / "tenants" / scope.tenant / scope.use_case)

    def warehouse_models(self) -> list[str]:
        """Every model the warehouse holds, by asset key (`staging/stg_weather`)."""
        if not self.warehouse_path.exists():
            return []
        with duckdb.connect(str(self.warehouse_path), read_only=True) as connection:
            tables = connection.sql(
                "select table_schema, table_name from information_schema.tables order by all"
            ).fetchall()
        return [f"{schema}/{table}" for schema, table in tables]

    def read_warehouse(self, model: str) -> pl.DataFrame:
        """A dbt model by its asset key (`staging/stg_weather`), read from the warehouse."""
        schema, table = model.split("/")
        if not self.warehouse_path.exists():
            raise FileNotFoundError(
                f"no warehouse at {self.warehouse_path}; materialize the dbt assets first"
            )
        with duckdb.connect(str(self.warehouse_path), read_only=True) as connection:
            relation = connection.sql(f'select * from "{schema}"."{table}"')
            frame = pl.from_arrow(relation.to_arrow_table())
        if not isinstance(frame, pl.DataFrame):  # a table is read as a DataFrame
            raise TypeError(f"{model} was read as a {type(frame).__name__}, not a DataFrame")
        # DuckDB names the session's zone (often 'Etc/UTC'); every timestamp here is UTC.
        return frame.with_columns(cs.datetime(time_zone="*").dt.convert_time_zone("UTC"))


@dataclass(frozen=True)
class UseCaseFiles:
    """Where a use case's feature tables, training sets, candidate and scores live."""

    root: Path

    @property
    def features_dir(self) -> Path:
        return self.root / "features"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def monitoring_dir(self) -> Path:
        return self.root / "monitoring"

    def feature_table_path(self, table: str) -> Path:
        return self.features_dir / f"{table}.parquet"

    def training_set_path(self, feature_service: str) -> Path:
        return self.root / "training" / f"{feature_service}.parquet"

    def predictions_path(self, day: str) -> Path:
        """Batch predictions of one day."""
        return self.root / "predictions" / f"{day}.parquet"
