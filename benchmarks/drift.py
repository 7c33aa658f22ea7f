"""Feature drift on 1,000,000 current rows x 20 columns against a 300,000-row reference.

  facilflow        - the drift assets' computation (`facilflow_assets.drift.statistics`):
                     Evidently's own per-column tests on the cleaned values;
  evidently_full   - a plain Evidently run of its data drift preset on the same frames.
The frames are synthetic and seeded: 12 continuous columns (4 of them shifted or rescaled
in the current frame), 4 with a few discrete values (1 shifted), 4 with 10% nulls (1
shifted). Each side runs once. `--rows` and `--reference-rows` make the frames smaller (a
smoke run) or larger. Ends with one JSON line.
"""

import argparse
import json
import time

import numpy as np
import polars as pl
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

from facilflow_assets.drift.statistics import column_drift

CURRENT_ROWS = 1_000_000
REFERENCE_ROWS = 300_000
DRIFT_SHARE = 0.5


def frames(
    reference_rows: int, current_rows: int, seed: int = 7
) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(seed)

    def make(rows: int, shifted: bool) -> pl.DataFrame:
        columns = {}
        for i in range(12):
            loc = 0.5 if shifted and i < 2 else 0.0
            scale = 1.6 if shifted and i in (2, 3) else 1.0
            columns[f"continuous_{i}"] = rng.normal(loc, scale, rows)
        for i in range(4):
            p = [0.2, 0.3, 0.5] if shifted and i == 0 else [0.4, 0.3, 0.3]
            columns[f"discrete_{i}"] = rng.choice([0.0, 1.0, 2.0], size=rows, p=p)
        for i in range(4):
            values = rng.gamma(2.0 + (1.0 if shifted and i == 0 else 0.0), 1.0, rows)
            values[rng.random(rows) < 0.1] = np.nan
            columns[f"with_nulls_{i}"] = values
        return pl.DataFrame(columns).fill_nan(None)

    return make(reference_rows, False), make(current_rows, True)


def evidently_full(reference: pl.DataFrame, current: pl.DataFrame) -> dict[str, bool]:
    definition = DataDefinition(numerical_columns=reference.columns)
    snapshot = Report([DataDriftPreset(drift_share=DRIFT_SHARE)]).run(
        current_data=Dataset.from_pandas(current.to_pandas(), data_definition=definition),
        reference_data=Dataset.from_pandas(reference.to_pandas(), data_definition=definition),
    )
    verdicts = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            verdicts[config["column"]] = metric["value"] >= config["threshold"]
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=CURRENT_ROWS, help="current rows")
    parser.add_argument("--reference-rows", type=int, default=REFERENCE_ROWS)
    arguments = parser.parse_args()
    reference, current = frames(arguments.reference_rows, arguments.rows)
    started = time.perf_counter()
    result = column_drift(reference, current, reference.columns, DRIFT_SHARE, "the benchmark")
    facilflow_s = time.perf_counter() - started
    started = time.perf_counter()
    full = evidently_full(reference, current)
    evidently_s = time.perf_counter() - started
    ours = {c.column: c.drifted for c in result.columns}
    print(
        json.dumps(
            {
                "rows": current.height,
                "reference_rows": reference.height,
                "columns": len(reference.columns),
                "facilflow_s": round(facilflow_s, 3),
                "evidently_full_s": round(evidently_s, 3),
                "same_verdicts": ours == full,
                "drifted_columns": sorted(result.drifted_columns),
            }
        )
    )


if __name__ == "__main__":
    main()
