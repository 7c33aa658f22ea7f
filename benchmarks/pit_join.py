"""Benchmark: the flight-delay training set through Feast: the polars, DuckDB and Ray stores.

What is measured: `FeatureStore.get_historical_features(...).to_df()` for every departed
flight (the entity frame of the `training_set` asset, 60 minutes' lead) with every feature
of the feature service `flight_delay_v1`, full feature names, on-demand view included:

  (a) FacilFlow's polars offline store (the code location's default),
  (b) Feast's own DuckDB offline store, over the same registry and parquet files,
  (c) Feast's own Ray offline store (contrib), over the same registry and parquet files,
  (d) a naive as-of oracle written here in plain polars, which does not use join_asof.

How: each store gets its own `FeatureStore` and one warm-up call on 1,000 entity rows (it
loads the registry and imports the store's modules), then one timed full run, measured with
`time.perf_counter` from the call to the returned pandas frame. The Ray store runs so in a
process of its own, on a Ray instance it starts there (local, every CPU, without token
auth; its start falls in the warm-up, reported apart), so that `--ray-timeout` can stop it:
a run that takes longer or raises is recorded as such in the figures and the rest goes on.
It runs before the DuckDB store, so as not to share the machine with that one's memory.
With Feast 0.67 it raises on this service (`feast_ray_error`): the timestamp column it adds
to the entity rows for each view is, by a late-bound closure, the last view's for all.
The oracle is timed from reading the parquet files to its finished frame. The results are
sorted by flight_id, their columns aligned, and compared value by value: floats exactly
equal or both missing, timestamps equal as UTC instants. Feast hands back pandas, where a
missing float is NaN, so NaN and null both count as missing (the feature tables hold no
NaN). `rows_identical` is the polars store against DuckDB and the oracle;
`feast_ray_rows_identical` the polars store against the Ray store.

Needs the working directory `make demo` builds (`.facilflow/`; the demo tenant's
flight-delay project); run from the project root (`--rows N`, the first N flights, makes a
smoke run):

    .venv/bin/python benchmarks/pit_join.py [--home DIR] [--rows N] [--ray-timeout S]
        [--skip-duckdb]

The last line of output is one JSON object with the figures.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import polars as pl
import ray
from feast import FeatureStore, FeatureView, RepoConfig

from facilflow_assets.environment import LOCAL_HOME, Environment
from facilflow_assets.features.feast_assets import build_entity_frame
from facilflow_assets.loopback import stop_process_group
from facilflow_assets.resource_map import build_resources
from facilflow_assets.scope import ModelScope
from facilflow_assets.tenants import DEFAULT_TENANT
from facilflow_assets.use_case import load_use_case, use_case_path
from resources import FeastResource
from resources.ray_cluster import LOCAL_RAY_ENV

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
RAY_TIMEOUT_S = 600.0
FEAST_FRAME = r'File "[^"]*/site-packages/(feast/[^"]+)", line (\d+), in (\w+)'
# What the Ray store's process reads and writes in its working directory.
RAY_ENTITIES, RAY_RESULT, RAY_FIGURES, RAY_LOG = (
    "entities.pkl",
    "result.pkl",
    "figures.json",
    "ray_store.log",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=LOCAL_HOME, help="working directory")
    parser.add_argument("--rows", type=int, help="the first N flights only (all if unset)")
    parser.add_argument(
        "--ray-timeout",
        type=float,
        default=RAY_TIMEOUT_S,
        help="seconds Feast's Ray store may take in all (its Ray instance's start, warm-up, "
        "run) before it is stopped and recorded as timed out (default %(default)g)",
    )
    parser.add_argument(
        "--skip-duckdb",
        action="store_true",
        help="leave out Feast's DuckDB store (at full size about 3 minutes and 21 GB of "
        "memory on a 2-core, 24 GB machine)",
    )
    parser.add_argument("--ray-child", type=Path, help=argparse.SUPPRESS)  # the Ray store's run
    arguments = parser.parse_args()
    home = arguments.home.resolve()
    resources = build_resources(Environment.LOCAL, home=home)
    polars_feast = resources["feast"]
    if arguments.ray_child:
        return _ray_store_process(polars_feast, arguments.ray_child)
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
    label = "facilflow polars"
    results[label], seconds[label] = _timed_run(label, polars_feast.feature_store(SCOPE), entity_df)
    print(
        f"feast ray: the same in a process of its own, at most {arguments.ray_timeout:g} s ...",
        flush=True,
    )
    ray_run = _run_ray_store(home, entity_df, arguments.ray_timeout)
    ray_frame = None
    if ray_run.frame is not None:
        try:
            ray_frame = _from_pandas(ray_run.frame)
            results["feast ray"], seconds["feast ray"] = ray_run.frame, ray_run.seconds
        except Exception as error:  # a column polars cannot take: recorded, not compared
            ray_run.error = f"its training set does not convert to polars: {_error_summary(error)}"
    if ray_frame is None:
        print(f"feast ray: {ray_run.error}")
    if not arguments.skip_duckdb:
        label = "feast duckdb"
        results[label], seconds[label] = _timed_run(
            label, duckdb_feast.feature_store(SCOPE), entity_df
        )

    store = polars_feast.feature_store(SCOPE)
    views = _service_views(store)
    start = time.perf_counter()
    oracle = _oracle(entities, views, polars_feast.storage.files(SCOPE).features_dir)
    seconds["oracle (plain polars)"] = time.perf_counter() - start

    frames = {
        label: _from_pandas(frame) for label, frame in results.items() if label != "feast ray"
    }
    if ray_frame is not None:
        frames["feast ray"] = ray_frame
    frames["oracle (plain polars)"] = oracle
    reference = frames["facilflow polars"]
    print()
    print(f"{'store':<24}{'seconds':>10}{'rows':>10}{'columns':>10}")
    for label, frame in frames.items():
        print(f"{label:<24}{seconds[label]:>10.2f}{frame.height:>10,}{frame.width:>10}")
    if ray_frame is None:
        print(f"{'feast ray':<24}{'-':>10}  {ray_run.error}")

    print()
    for label in ("feast duckdb", "feast ray"):
        if label in results:
            _report_dtypes(results["facilflow polars"], label, results[label])
    identical = True
    for label in ("feast duckdb", "oracle (plain polars)"):
        if label in frames:
            same = _compare("facilflow polars", reference, label, frames[label])
            identical = identical and same
    if "feast duckdb" in frames:
        _compare("feast duckdb", frames["feast duckdb"], "oracle", oracle)
    ray_identical = None
    if "feast ray" in frames:
        ray_identical = _compare("facilflow polars", reference, "feast ray", frames["feast ray"])

    facilflow_s = seconds["facilflow polars"]
    duckdb_s = seconds.get("feast duckdb")
    figures = {
        "rows": reference.height,
        "features": sum("__" in c for c in reference.columns),
        "facilflow_s": round(facilflow_s, 3),
        "feast_duckdb_s": _rounded(duckdb_s, 3),
        "oracle_s": round(seconds["oracle (plain polars)"], 3),
        "ratio_vs_feast_duckdb": _rounded(duckdb_s and duckdb_s / facilflow_s, 1),
        "rows_identical": identical,
        "feast_ray_s": _rounded(ray_run.seconds, 3),
        "feast_ray_warm_up_s": _rounded(ray_run.warm_up_seconds, 3),
        "feast_ray_process_s": round(ray_run.process_seconds, 3),
        "feast_ray_error": ray_run.error,
        "feast_ray_rows_identical": ray_identical,
        "ratio_vs_feast_ray": _rounded(ray_run.seconds and ray_run.seconds / facilflow_s, 1),
    }
    print()
    for label, ratio in [
        ("DuckDB", figures["ratio_vs_feast_duckdb"]),
        ("Ray", figures["ratio_vs_feast_ray"]),
    ]:
        if ratio is not None:
            print(f"polars store is {ratio}x faster than Feast's {label} store")
    print(json.dumps(figures))
    return 0


def _timed_run(
    label: str, store: FeatureStore, entity_df: pd.DataFrame
) -> tuple[pd.DataFrame, float]:
    """The training set from `store` after a warm-up, and the seconds of its full run."""
    print(f"{label}: warm-up on {WARM_UP_ROWS:,} rows, then the full run ...", flush=True)
    _training_set(store, entity_df.head(WARM_UP_ROWS))
    start = time.perf_counter()
    frame = _training_set(store, entity_df)
    return frame, time.perf_counter() - start


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class RayRun:
    """What Feast's Ray store gave: its training set and seconds, or why not."""

    process_seconds: float  # its process, from start to exit: Ray's start, warm-up, run
    frame: pd.DataFrame | None = None
    seconds: float | None = None
    warm_up_seconds: float | None = None
    error: str | None = None


def _run_ray_store(home: Path, entity_df: pd.DataFrame, timeout: float) -> RayRun:
    """Feast's Ray store, warm-up and timed run, in a process of its own (this script with
    `--ray-child`), stopped with its Ray instance once `timeout` seconds have passed.

    That process leads a new process group, which Ray's head processes (GCS server,
    raylet) join; Ray's workers have groups of their own and end with the raylet.
    """
    with tempfile.TemporaryDirectory(prefix="pit_join_ray_") as directory:
        work = Path(directory)
        entity_df.to_pickle(work / RAY_ENTITIES)
        command = [sys.executable, str(Path(__file__).resolve()), "--home", str(home)]
        command += ["--ray-child", str(work)]
        # Ray reads the auth mode once, at its start: set for the process from its first line.
        env = {**os.environ, **LOCAL_RAY_ENV}
        env.pop("RAY_ADDRESS", None)  # Feast's store would join that cluster
        start = time.perf_counter()
        with (work / RAY_LOG).open("w") as log:
            child = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                code = child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                stop_process_group(child, grace_s=15)
                return RayRun(
                    process_seconds=time.perf_counter() - start,
                    error=f"timed out after {timeout:g} s (stopped)",
                )
        process_seconds = time.perf_counter() - start
        figures_path = work / RAY_FIGURES
        figures = json.loads(figures_path.read_text()) if figures_path.exists() else {}
        if code != 0 or "error" in figures:
            lines = (work / RAY_LOG).read_text().strip().splitlines()
            print("feast ray: its process failed; the end of its output:", file=sys.stderr)
            for line in lines[-20:]:
                print(f"  {line}", file=sys.stderr)
            return RayRun(
                process_seconds=process_seconds,
                warm_up_seconds=figures.get("warm_up_s"),
                error=figures.get("error") or f"exit code {code}: {lines[-1] if lines else ''}",
            )
        return RayRun(
            process_seconds=process_seconds,
            frame=pd.read_pickle(work / RAY_RESULT),
            seconds=figures["seconds"],
            warm_up_seconds=figures["warm_up_s"],
        )


def _ray_store_process(feast: FeastResource, work: Path) -> int:
    """The Ray store's side (`--ray-child`): warm-up and timed run on the entity rows in
    `work`, the training set and figures written back there, Ray shut down."""
    entity_df = pd.read_pickle(work / RAY_ENTITIES)
    figures: dict[str, object] = {}
    stage = "warm-up"
    try:
        store = FeatureStore(config=_ray_repo_config(feast, work / "storage"))
        start = time.perf_counter()
        _training_set(store, entity_df.head(WARM_UP_ROWS))  # starts Ray
        figures["warm_up_s"] = time.perf_counter() - start
        stage = "full run"
        start = time.perf_counter()
        frame = _training_set(store, entity_df)
        figures["seconds"] = time.perf_counter() - start
        frame.to_pickle(work / RAY_RESULT)
    except Exception as error:
        traceback.print_exc()
        figures["error"] = f"{stage}: {_error_summary(error)}"
    finally:
        ray.shutdown()
    (work / RAY_FIGURES).write_text(json.dumps(figures))
    return 1 if "error" in figures else 0


def _error_summary(error: BaseException) -> str:
    """One line for an error: its type and message; for a Ray task's error, whose message is
    the task's traceback as text, the first exception raised there and the last place in
    Feast's code before it."""
    text = str(error).strip()
    raised = re.search(r"^\s*(\w+(?:Error|Exception)): (.+)$", text, re.MULTILINE)
    places = re.findall(FEAST_FRAME, text[: raised.start()]) if raised else []
    if not places:
        return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
    file, line, function = places[-1]
    return f"{type(error).__name__}, from {raised[1]}: {raised[2]} (in {function}, {file}:{line})"


def _ray_repo_config(feast: FeastResource, storage_path: Path) -> RepoConfig:
    """The scope's settings with Feast's Ray offline store, on a new local Ray instance
    ("local": not one that `ray start` runs here, such as the serving endpoint's)."""
    settings = feast.repo_settings(SCOPE)
    settings["offline_store"] = {
        "type": "ray",
        "storage_path": str(storage_path),
        "ray_conf": {"address": "local"},
    }
    return RepoConfig(**settings, repo_path=feast.storage.files(SCOPE).features_dir)


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
        left_values, right_values = a[column], b[column]
        if left_values.dtype != right_values.dtype:  # e.g. a pandas column of None only
            left_values, right_values = left_values.cast(pl.String), right_values.cast(pl.String)
        unequal = ~left_values.eq_missing(right_values)
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


def _report_dtypes(polars_frame: pd.DataFrame, label: str, other_frame: pd.DataFrame) -> None:
    differing = {
        c: (str(polars_frame[c].dtype), str(other_frame[c].dtype))
        for c in polars_frame.columns
        if c in other_frame.columns and polars_frame[c].dtype != other_frame[c].dtype
    }
    if differing:
        print(f"pandas dtypes that differ (polars store, {label}); numbers compared as floats:")
        for column, (left, right) in differing.items():
            print(f"  {column}: {left}, {right}")
        print()


if __name__ == "__main__":
    sys.exit(main())
