"""The raw assets and the dbt project, materialized for real into a temporary home."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import duckdb

from facilflow_assets.demo.run import SUMMARY_FILE
from facilflow_assets.environment import PROJECT_ROOT
from facilflow_assets.warehouse.assets import DBT_EXECUTABLE

FLIGHTS = 336_776


def _query(home: Path, sql: str):
    # Same configuration as the connection dagster-dbt keeps open in this process for row counts.
    with duckdb.connect(str(home / "warehouse.duckdb")) as connection:
        return connection.execute(sql).fetchall()


def test_every_asset_is_materialized_with_its_row_count(built_home):
    summary = built_home.summary
    rows = {s.asset: s.rows for s in summary}
    assert rows["raw/flights"] == FLIGHTS
    assert rows["staging/stg_flights"] == FLIGHTS
    assert rows["marts/fct_flight_departure_weather"] == FLIGHTS
    assert rows["staging/stg_weather"] == rows["raw/weather"] == 26_115
    warehouse = {a: n for a, n in rows.items() if a.split("/")[0] in ("raw", "staging", "marts")}
    assert len(warehouse) == 13
    assert all(count and count > 0 for count in warehouse.values()), warehouse


def test_dbt_tests_pass_and_only_the_documented_destination_gap_warns(built_home):
    summary = built_home.summary
    assert sum(s.checks_failed for s in summary) == 0
    assert sum(s.checks_passed for s in summary) >= 40
    warned = {s.asset for s in summary if s.checks_warned}
    assert warned == {"staging/stg_flights"}


def test_staging_timestamps_are_utc(built_home):
    home = built_home.home
    [(column_type,)] = _query(
        home,
        "select data_type from information_schema.columns "
        "where table_name = 'stg_flights' and column_name = 'scheduled_departure_at'",
    )
    assert column_type == "TIMESTAMP WITH TIME ZONE"
    [(first,)] = _query(
        home,
        "select strftime(timezone('UTC', min(scheduled_departure_at)), '%Y-%m-%d %H:%M') "
        "from staging.stg_flights",
    )
    assert first == "2013-01-01 10:15"  # 05:15 in New York


def test_mart_joins_each_flight_with_its_departure_hour_weather(built_home):
    home = built_home.home
    [(with_weather, mismatched)] = _query(
        home,
        """
        select
            count(*) filter (where m.has_departure_weather),
            count(*) filter (where m.has_departure_weather and m.visibility_mi is distinct from
                             w.visibility_mi)
        from marts.fct_flight_departure_weather m
        join staging.stg_flights f using (flight_id)
        left join staging.stg_weather w
          on w.airport_code = f.origin_airport_code
         and w.observed_hour_at = f.scheduled_departure_hour_at
        """,
    )
    assert with_weather > 0.99 * FLIGHTS
    assert mismatched == 0


def test_demo_summary_file_lists_every_asset(built_home):
    home, summary = built_home.home, built_home.summary
    document = json.loads((home / SUMMARY_FILE).read_text())
    assert [a["asset"] for a in document["assets"]] == [s.asset for s in summary]
    assert document["wall_seconds"] > 0
    phases = document["phase_seconds"]
    assert list(phases) == [
        "Ray and definitions",
        "warehouse",
        "flight_delay",
        "arrival_delay",
        "governance",
        "serving",
        "monitoring",
        "events",
    ]
    assert sum(phases.values()) <= document["wall_seconds"] + 1


def test_dbt_build_works_on_its_own_from_the_dbt_folder(built_home, tmp_path):
    built = built_home.home
    home = tmp_path / "standalone"
    shutil.copytree(built / "raw", home / "raw")
    result = subprocess.run(
        [DBT_EXECUTABLE, "build", "--target-path", str(tmp_path / "target")],
        cwd=PROJECT_ROOT / "dbt",
        env={**os.environ, "FACILFLOW_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "ERROR=0" in result.stdout
    assert (home / "warehouse.duckdb").exists()
