"""Batch scoring of every flight of 2013 with the Production model, against the model's own
predict on the same frame.

  facilflow     - the batch asset's scoring: the column mapping checked against the frame,
                  the inputs cast to float32 in signature order, LightGBM's predict;
  raw_predict   - the booster's predict called directly on the same rows as a pandas
                  frame of the model's inputs, as a user of the model would.
The feature frame (336,776 flights, their point-in-time features through Feast) is built
once, untimed; `--scale N` repeats it N times (10x, 100x the year's flights). Each side
runs once untimed, then five times alternately; the best counts. `--rows N` (the first N
flights) and `--repeats N` make a smoke run.
Run `make demo` first (or name its working directory with `--home`). Ends with one JSON line.
"""

import argparse
import json
import time
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from facilflow_assets.environment import LOCAL_HOME, Environment
from facilflow_assets.features.feast_assets import historical_features
from facilflow_assets.features.target_rows import entity_frame, target_rows
from facilflow_assets.resource_map import build_resources
from facilflow_assets.scope import ModelScope
from facilflow_assets.serving.models import PRODUCTION, load, resolve
from facilflow_assets.serving.scoring import resolve_mapping, score
from facilflow_assets.tenants import DEFAULT_TENANT
from facilflow_assets.use_case import load_use_case, use_case_path

REPEATS = 5
SCOPE = ModelScope(DEFAULT_TENANT, "flight_delay")  # the use case `make demo` takes through
USE_CASE = load_use_case(use_case_path(SCOPE.use_case))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=LOCAL_HOME, help="working directory")
    parser.add_argument("--rows", type=int, help="the first N flights only (all if unset)")
    parser.add_argument("--scale", type=int, default=1, help="copies of the year's flights")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="timed runs of each side")
    arguments = parser.parse_args()
    scale = arguments.scale
    configured = build_resources(Environment.LOCAL, home=arguments.home.resolve())
    keys = ("storage", "feast", "mlflow")
    with dg.build_resources({key: configured[key] for key in keys}) as resources:
        client = resources.mlflow.client()
        model = load(client, resolve(client, SCOPE.registered_model_name, PRODUCTION))
        flights = target_rows(resources.storage, USE_CASE).slice(0, arguments.rows)
        store = resources.feast.feature_store(SCOPE)
        frame = historical_features(
            store,
            store.get_feature_service(USE_CASE.feature_service),
            entity_frame(flights, USE_CASE.target, USE_CASE.target.lead_minutes),
        )
    frame = pl.concat([frame] * scale) if scale > 1 else frame
    mapping = resolve_mapping(model, {})
    as_pandas = frame.select(model.input_names).to_pandas()

    def facilflow() -> np.ndarray:
        return score(model, frame, mapping, "the benchmark frame")

    def raw_predict() -> np.ndarray:
        return model.booster.predict(as_pandas)

    timings: dict[str, list[float]] = {"facilflow": [], "raw_predict": []}
    results = {name: run() for name, run in (("facilflow", facilflow), ("raw", raw_predict))}
    for _ in range(arguments.repeats):
        for name, run in (("facilflow", facilflow), ("raw_predict", raw_predict)):
            started = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - started)
    facilflow_s, raw_s = min(timings["facilflow"]), min(timings["raw_predict"])
    figures = {
        "rows": frame.height,
        "scale": scale,
        "features": len(model.input_names),
        "model": model.ref.uri,
        "facilflow_s": round(facilflow_s, 3),
        "raw_predict_s": round(raw_s, 3),
        "ratio": round(facilflow_s / raw_s, 3),
        "max_abs_difference": float(np.abs(results["facilflow"] - results["raw"]).max()),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
