"""How long the `facilflow` commands a user types most take, beside MLflow's own CLI.

A local working directory gets what `make demo` leaves in the registry of one use case:
training runs with metrics, parameters and nested trials, and versions moved through
Staging and Production by audited transitions, one with a pending request. Each command
then runs as a fresh process, `--repeats` times after `--warm-up` uncounted runs (cold
file caches), and the median wall time is reported:

  facilflow   - `models list`, `models history`, `runs compare`, `use-cases list`, `--help`;
  mlflow      - `mlflow runs list` over the same store, and `import mlflow` alone: the
                floor under any command that reads the registry with MLflow's client.
Ends with one JSON line.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from facilflow_assets.environment import Environment
from facilflow_assets.governance.audit import AuditTrail
from facilflow_assets.governance.digest import DIGEST_TAG
from facilflow_assets.governance.requests import request_production
from facilflow_assets.governance.stages import Stage
from facilflow_assets.governance.transitions import SYSTEM_ACTOR, transition
from facilflow_assets.resource_map import build_resources
from facilflow_assets.scope import ModelScope
from facilflow_assets.tenants import DEFAULT_TENANT

SCOPE = ModelScope(DEFAULT_TENANT, "flight_delay")
MODEL = SCOPE.registered_model_name
BIN = Path(sys.executable).parent
REPEATS = 5
WARM_UP = 1
RUNS = 4  # training runs, each with TRIALS nested trials
TRIALS = 8
VERSIONS = 4


def fill_registry(home: Path) -> str:
    """A demo-sized registry under `home`; returns the training experiment's id."""
    tracking = build_resources(Environment.LOCAL, home=home, keys=("mlflow",))["mlflow"]
    client = tracking.client()
    experiment_id = tracking.ensure_experiment(SCOPE).experiment_id
    runs = []
    for number in range(RUNS):
        parent = client.create_run(experiment_id, run_name=f"train-{number}")
        for trial in range(TRIALS):
            child = client.create_run(
                experiment_id, tags={"mlflow.parentRunId": parent.info.run_id}
            )
            client.log_metric(child.info.run_id, "valid_auc", 0.6 + trial / 100)
            client.set_terminated(child.info.run_id)
        client.log_metric(parent.info.run_id, "holdout_auc", 0.7 + number / 100)
        client.log_param(parent.info.run_id, "max_depth", str(4 + number))
        client.set_terminated(parent.info.run_id)
        runs.append(parent)
    client.create_registered_model(MODEL)
    audit = AuditTrail(client, SCOPE.audit_experiment_name)
    for run in runs[:VERSIONS]:
        version = client.create_model_version(
            MODEL, f"{run.info.artifact_uri}/model", run_id=run.info.run_id
        ).version
        for stage in (Stage.STAGING, Stage.PRODUCTION):
            transition(client, audit, MODEL, str(version), stage, SYSTEM_ACTOR, "benchmark")
    # Evaluated (its files' digest recorded), so that it can be requested.
    latest = client.create_model_version(
        MODEL, f"{runs[0].info.artifact_uri}/model", tags={DIGEST_TAG: "sha256:0"}
    ).version
    transition(client, audit, MODEL, str(latest), Stage.STAGING, SYSTEM_ACTOR, "benchmark")
    request_production(client, audit, MODEL, str(latest), "carol", "benchmark")
    return experiment_id


def wall_times(command: list[str], env: dict[str, str], repeats: int, warm_up: int) -> list[float]:
    """Wall times of `command` as fresh processes, after `warm_up` uncounted runs."""
    times = []
    for _ in range(warm_up + repeats):
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True, timeout=120)
        times.append(time.perf_counter() - started)
    return times[warm_up:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=REPEATS, help="timed runs per command")
    parser.add_argument("--warm-up", type=int, default=WARM_UP, help="uncounted runs first")
    arguments = parser.parse_args()
    repeats = arguments.repeats
    with tempfile.TemporaryDirectory() as directory:
        home = Path(directory) / "facilflow"
        experiment_id = fill_registry(home)
        facilflow = [str(BIN / "facilflow"), "--home", str(home)]
        commands = {
            "models_list": [*facilflow, "models", "list"],
            "models_history": [*facilflow, "models", "history"],
            "runs_compare": [*facilflow, "runs", "compare"],
            "use_cases_list": [*facilflow, "use-cases", "list"],
            "help": [*facilflow, "--help"],
            "mlflow_runs_list": [
                str(BIN / "mlflow"),
                "runs",
                "list",
                "--experiment-id",
                experiment_id,
            ],
            "import_mlflow": [sys.executable, "-c", "import mlflow"],
        }
        store = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
        env = {**os.environ, "MLFLOW_TRACKING_URI": store}
        figures = {}
        for name, command in commands.items():
            times = wall_times(command, env, repeats, arguments.warm_up)
            print(f"{name:18} {' '.join(f'{t:.2f}' for t in times)} s")
            figures[f"{name}_s"] = round(statistics.median(times), 2)
    print(json.dumps({"repeats": repeats, **figures}))


if __name__ == "__main__":
    main()
