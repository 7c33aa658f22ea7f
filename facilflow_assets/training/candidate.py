"""The trained candidate handed from training to evaluation and registration."""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from facilflow_assets.atomic_files import write_json_atomic


@dataclass(frozen=True)
class Candidate:
    run_id: str
    experiment_id: str
    model_uri: str
    feature_service: str
    data_version: str
    feature_names: list[str]
    validation_start: str
    holdout_start: str
    best_valid_auc: float

    def write(self, path: Path) -> None:
        write_json_atomic(asdict(self), path)

    @classmethod
    def read(cls, path: Path) -> "Candidate":
        if not path.exists():
            raise FileNotFoundError(f"no trained candidate at {path}; materialize training first")
        return cls(**json.loads(path.read_text()))
