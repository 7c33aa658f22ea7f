"""Benchmark: the flight-delay training set through Feast, polars store against DuckDB store.

What is measured: `FeatureStore.get_historical_features(...).to_df()` for every departed
flight (the entity frame of the `training_set` asset, 60 minutes' lead) with every feature
of the feature service `flight_delay_v1`, full feature names, on-demand view included:

  (a) FacilFlow's polars offline store (the code location's default),
  (b) Feast's own DuckDB offline store, over the same registry and parquet files,
  (c) a naive as-of oracle written here in plain polars, which does not use join_asof.

How: each store gets its own `FeatureStore` and one warm-up call on 1,000 entity rows (it
loads the registry and imports the store's modules), then one timed full run, measured with
`time.perf_counter` from the call to the returned pandas frame. The oracle is timed from
reading the parquet files to its finished frame. The three results are sorted by flight_id,
their columns aligned, and compared value by value: floats exactly equal or both missing,
timestamps equal as UTC instants. Feast hands back pandas, where a missing float is NaN,
so NaN and null both count as missing (the feature tables hold no NaN).

Needs the working directory `make demo` builds (`.facilflow/`; the demo tenant's
flight-delay project); run from the project root (`--rows N`, the first N flights, makes a
smoke run):

    .venv/bin/python benchmarks/pit_join.py [--home DIR] [--rows N]

The last line of output is one JSON object with the figures.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
import polars as pl
from feast import FeatureStore, FeatureView

from facilflow_assets.environment import LOCAL_HOME, Environment
from facilflow_assets.features.feast_assets import build_entity_frame
from facilflow_assets.resource_map import build_resources
from facilflow_assets.scope import ModelScope
from facilflow_assets.tenants import DEFAULT_TENANT
from facilflow_assets.use_case import load_use_case, use_case_path
from resources import FeastResource

SCOPE = ModelScope(DEFAULT_TENANT, "flight_delay")  # the demo tenant's Feast project
USE_CASE = load_use_case(use_case_path(SCOPE.use_case))
FEATURE_SERVICE = USE_CASE.feature_service
LEAD_MINUTES = USE_CASE.target.lead_minutes
WARM_UP_ROWS = 1_000
ENTITY_TIME = "event_timestamp"
UTC_MICROSECONDS = pl.Datetime("us", "UTC")
# The on-demand view of the service, computed by the oracle as on_demand.py does.
ODFV_COLUMN = "delay_context__route_vs_carrier_delay_rate"
ODFV_NUMERATOR = "route_history__route_delay_rate_30d"
ODFV_DENOMINATOR = "carrier_history__carrier_delay_rate_7d"
EXAMPLES = 5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=LOCAL_HOME, help="working directory")
    parser.add_argument("--rows", type=int, help="the first N flights only (all if unset)")
    arguments = parser.parse_args()
    home = arguments.home.resolve()
    resources = build_resources(Environment.LOCAL, home=home)
    polars_feast = resources["feast"]
    missing = _missing_inputs(polars_feast)
    if missing:
        print(f"The benchmark needs a built working directory at {home}; missing:", file=sys.stderr)
        for path in missing:
            print(f"  {path}", file=sys.stderr)
        print(
            "Run `make demo` first: it builds the warehouse, the feature tables and the registry.",
            file=sys.stderr,
        )
        return 2

    duckdb_feast = polars_feast.model_copy(update={"offline_store": "duckdb"})
    entities = build_entity_frame(resources["storage"], USE_CASE, LEAD_MINUTES).slice(
        0, arguments.rows
    )
    entity_df = entities.to_pandas()
    print(f"entity rows: {len(entity_df):,}, feature service: {FEATURE_SERVICE}")

    results: dict[str, pd.DataFrame] = {}
    seconds: dict[str, float] = {}
    for label, feast in [("facilflow polars", polars_feast), ("feast duckdb", duckdb_feast)]:
        store = feast.feature_store(SCOPE)
        print(f"{label}: warm-up on {WARM_UP_ROWS:,} rows, then the full run ...", flush=True)
        _training_set(store, entity_df.head(WARM_UP_ROWS))
        start = time.perf_counter()
        results[label] = _training_set(store, entity_df)
        seconds[label] = time.perf_counter() - start

    store = polars_feast.feature_store(SCOPE)
    views = _service_views(store)
    start = time.perf_counter()
    oracle = _oracle(entities, views, polars_feast.storage.files(SCOPE).features_dir)
    seconds["oracle (plain polars)"] = time.perf_counter() - start

    frames = {
        "facilflow polars": _from_pandas(results["facilflow polars"]),
        "feast duckdb": _from_pandas(results["feast duckdb"]),
        "oracle (plain polars)": oracle,
    }
    reference = frames["facilflow polars"]
    print()
    print(f"{'store':<24}{'seconds':>10}{'rows':>10}{'columns':>10}")
    for label, frame in frames.items():
        print(f"{label:<24}{seconds[label]:>10.2f}{frame.height:>10,}{frame.width:>10}")

    print()
    _report_dtypes(results["facilflow polars"], results["feast duckdb"])
    identical = True
    for label in ("feast duckdb", "oracle (plain polars)"):
        same = _compare("facilflow polars", reference, label, frames[label])
        identical = identical and same
    _compare("feast duckdb", frames["feast duckdb"], "oracle", oracle)

    facilflow_s = seconds["facilflow polars"]
    duckdb_s = seconds["feast duckdb"]
    figures = {
        "rows": reference.height,
        "features": sum("__" in c for c in reference.columns),
        "facilflow_s": round(facilflow_s, 3),
        "feast_duckdb_s": round(duckdb_s, 3),
        "oracle_s": round(seconds["oracle (plain polars)"], 3),
        "ratio_vs_feast_duckdb": round(duckdb_s / facilflow_s, 1),
        "rows_identical": identical,
    }
    print()
    print(f"polars store is {figures['ratio_vs_feast_duckdb']}x faster than Feast's DuckDB store")
    print(json.dumps(figures))
    return 0


def _missing_inputs(feast: FeastResource) -> list[Path]:
    storage = feast.storage
    files = storage.files(SCOPE)
    needed = [
        storage.warehouse_path,
        *(files.feature_table_path(table.name) for table in USE_CASE.tables),
        feast.registry_path(SCOPE),
    ]
    return [path for path in needed if not path.exists()]


def _training_set(store: FeatureStore, entity_df: pd.DataFrame) -> pd.DataFrame:
    service = store.get_feature_service(FEATURE_SERVICE)
    job = store.get_historical_features(
        entity_df=entity_df, features=service, full_feature_names=True
    )
    return job.to_df()


def _service_views(store: FeatureStore) -> list[tuple[FeatureView, list[str]]]:
    """The service's feature views with the features it takes from each."""
    service = store.get_feature_service(FEATURE_SERVICE)
    views = []
    for projection in service.feature_view_projections:
        features = [f.name for f in projection.features]
        if projection.name == ODFV_COLUMN.split("__")[0]:
            if features != [ODFV_COLUMN.split("__")[1]]:
                raise ValueError(f"the oracle does not know on-demand features {features}")
            continue
        if projection.name_alias or projection.join_key_map:
            raise ValueError(f"the oracle does not handle the projection of {projection.name}")
        views.append((store.get_feature_view(projection.name), features))
    return views


def _oracle(
    entities: pl.DataFrame, views: list[tuple[FeatureView, list[str]]], features_dir: Path
) -> pl.DataFrame:
    """The training set by the definition of a point-in-time join, without join_asof.

    Per view: put feature rows and entity rows in one frame ordered by join keys and time,
    feature rows before entity rows at the same time (event time <= entity time), and
    carry the number of the latest feature row forward to each entity row of the same keys.
    Rows older than the view's TTL before the entity time are then dropped (TTL 0: none).
    """
    row, feature_row, at, is_entity = "__row", "__feature_row", "__at", "__is_entity"
    result = entities.with_row_index(row).with_columns(_utc(pl.col(ENTITY_TIME)))
    for view, features in views:
        source = view.batch_source
        keys = [column.name for column in view.entity_columns]
        table = pl.read_parquet(features_dir / Path(source.path).name)
        table = table.rename({a: b for a, b in source.field_mapping.items() if a in table.columns})
        table = (
            table.select(*keys, _utc(pl.col(source.timestamp_field)), *features)
            .drop_nulls(keys)  # a null key matches nothing, as in SQL
            .sort([*keys, source.timestamp_field])
            .with_row_index(feature_row)
        )
        stamps = table.select(*keys, pl.col(source.timestamp_field).alias(at), feature_row)
        lookups = result.select(*keys, pl.col(ENTITY_TIME).alias(at), row)
        union = pl.concat(
            [
                stamps.with_columns(pl.lit(False).alias(is_entity)),
                lookups.with_columns(pl.lit(True).alias(is_entity)),
            ],
            how="diagonal",
        ).sort([*keys, at, is_entity, feature_row], nulls_last=True)
        latest = (
            union.with_columns(pl.col(feature_row).forward_fill().over(keys))
            .filter(pl.col(is_entity))
            .select(row, at, feature_row)
            .join(table, on=feature_row, how="left")
        )
        age = pl.col(at) - pl.col(source.timestamp_field)
        fresh = age <= view.ttl if view.ttl and view.ttl.total_seconds() > 0 else pl.lit(True)
        picked = latest.select(
            row,
            *(pl.when(fresh).then(pl.col(f)).alias(f"{view.name}__{f}") for f in features),
        )
        result = result.join(picked, on=row, how="left")
    rate = pl.col(ODFV_DENOMINATOR)
    result = result.with_columns(
        pl.when(rate != 0).then(pl.col(ODFV_NUMERATOR) / rate).alias(ODFV_COLUMN)
    )
    return result.sort(row).drop(row)


def _utc(expr: pl.Expr, naive: bool = False) -> pl.Expr:
    """A timestamp column as UTC microseconds; naive values are taken to be UTC."""
    zoned = expr.dt.replace_time_zone("UTC") if naive else expr.dt.convert_time_zone("UTC")
    return zoned.cast(UTC_MICROSECONDS)


def _from_pandas(frame: pd.DataFrame) -> pl.DataFrame:
    return pl.from_pandas(frame, nan_to_null=True)


def _normalized(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """Columns in the given order, rows by flight_id, numbers as floats, NaN as null."""
    fixed = []
    for column in columns:
        dtype = frame.schema[column]
        expr = pl.col(column)
        if dtype.is_numeric():
            expr = expr.cast(pl.Float64).fill_nan(None)
        elif isinstance(dtype, pl.Datetime):
            expr = _utc(expr, naive=dtype.time_zone is None)
        fixed.append(expr)
    return frame.select(fixed).sort("flight_id")


def _compare(left_label: str, left: pl.DataFrame, right_label: str, right: pl.DataFrame) -> bool:
    """Whether two training sets hold the same rows and values; prints what differs."""
    title = f"{left_label} vs {right_label}"
    if set(left.columns) != set(right.columns):
        only_left = sorted(set(left.columns) - set(right.columns))
        only_right = sorted(set(right.columns) - set(left.columns))
        print(f"{title}: columns differ; only left {only_left}, only right {only_right}")
        return False
    if left.height != right.height:
        print(f"{title}: {left.height:,} rows against {right.height:,}")
        return False
    if left["flight_id"].n_unique() != left.height:
        print(f"{title}: flight_id is not unique, rows cannot be paired")
        return False
    a, b = _normalized(left, left.columns), _normalized(right, left.columns)
    if not a["flight_id"].equals(b["flight_id"]):
        print(f"{title}: the flights differ")
        return False
    differing = {}
    for column in a.columns:
        unequal = ~a[column].eq_missing(b[column])
        if unequal.any():
            differing[column] = unequal
    if not differing:
        print(f"{title}: identical ({a.height:,} rows x {a.width} columns)")
        return True
    print(f"{title}: {len(differing)} columns differ")
    for column, unequal in differing.items():
        print(f"  {column}: {int(unequal.sum()):,} rows, e.g.")
        sample = pl.DataFrame(
            {
                "flight_id": a["flight_id"],
                ENTITY_TIME: a[ENTITY_TIME],
                left_label: a[column],
                right_label: b[column],
            }
        ).filter(unequal)
        for values in sample.head(EXAMPLES).iter_rows():
            print(f"    {values}")
    return False


def _report_dtypes(polars_frame: pd.DataFrame, duckdb_frame: pd.DataFrame) -> None:
    differing = {
        c: (str(polars_frame[c].dtype), str(duckdb_frame[c].dtype))
        for c in polars_frame.columns
        if c in duckdb_frame.columns and polars_frame[c].dtype != duckdb_frame[c].dtype
    }
    if differing:
        print("pandas dtypes that differ (polars store, duckdb store); values compared as floats:")
        for column, (left, right) in differing.items():
            print(f"  {column}: {left}, {right}")
        print()


if __name__ == "__main__":
    sys.exit(main())
