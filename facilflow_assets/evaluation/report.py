"""The evaluation report: candidate and baseline on the holdout, and the verdict."""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from facilflow_assets.atomic_files import write_json_atomic
from facilflow_assets.metadata import markdown_table


class EvaluationConfig(dg.Config):
    """What a candidate must clear on the holdout to be registered."""

    candidate_run_id: str = Field(
        default="",
        description="Evaluate the model of this training run, making it the candidate; the "
        "latest trained model when empty.",
    )
    min_auc: float = Field(default=0.70, ge=0, le=1, description="Lowest acceptable AUC.")
    min_auc_lift: float = Field(
        default=0.0,
        description="Lowest relative AUC gain over the baseline (0.02: 2% above it).",
    )
    max_log_loss: float = Field(default=0.6, gt=0, description="Highest acceptable log loss.")
    decision_threshold: float = Field(
        default=0.5, gt=0, lt=1, description="Probability from which a row counts as positive."
    )


@dataclass(frozen=True)
class EvaluationReport:
    candidate_run_id: str
    model_uri: str
    baseline: str
    baseline_description: str
    baseline_version: str | None
    holdout_start: str
    holdout_rows: int
    candidate_metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    auc_lift: float  # candidate AUC over baseline AUC, minus 1
    thresholds: dict[str, float]
    failures: list[str]  # one sentence per threshold not cleared
    model_digest: str  # of the model files scored: what registration and approval bind to

    @property
    def passed(self) -> bool:
        return not self.failures

    def write(self, path: Path) -> None:
        write_json_atomic({**asdict(self), "passed": self.passed}, path)

    @classmethod
    def read(cls, path: Path) -> "EvaluationReport":
        if not path.exists():
            raise FileNotFoundError(f"no evaluation report at {path}; materialize evaluation")
        document = json.loads(path.read_text())
        document.pop("passed")
        return cls(**document)

    def comparison(self) -> pl.DataFrame:
        """One row per metric: candidate, baseline and the difference."""
        names = list(self.candidate_metrics)
        return pl.DataFrame(
            {
                "metric": names,
                "candidate": [self.candidate_metrics[n] for n in names],
                self.baseline: [self.baseline_metrics[n] for n in names],
                "difference": [self.candidate_metrics[n] - self.baseline_metrics[n] for n in names],
            }
        )

    def markdown(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED: " + "; ".join(self.failures)
        return "\n".join(
            [
                f"# Evaluation of run {self.candidate_run_id}",
                "",
                f"Holdout: {self.holdout_rows:,} rows from {self.holdout_start}. "
                f"Baseline: {self.baseline_description}.",
                "",
                markdown_table(self.comparison()),
                "",
                f"AUC lift over the baseline: {self.auc_lift:+.2%}. Verdict: {verdict}",
            ]
        )


def judge(
    candidate: dict[str, float], auc_lift: float, config: EvaluationConfig
) -> tuple[dict[str, float], list[str]]:
    """The thresholds applied and a sentence for each one the candidate misses."""
    thresholds = {
        "min_auc": config.min_auc,
        "min_auc_lift": config.min_auc_lift,
        "max_log_loss": config.max_log_loss,
    }
    failures = []
    if candidate["auc"] < config.min_auc:
        failures.append(f"AUC {candidate['auc']:.4f} is below min_auc {config.min_auc}")
    if auc_lift < config.min_auc_lift:
        failures.append(
            f"AUC lift over the baseline {auc_lift:+.4f} is below min_auc_lift "
            f"{config.min_auc_lift:+}"
        )
    if candidate["log_loss"] > config.max_log_loss:
        failures.append(
            f"log loss {candidate['log_loss']:.4f} is above max_log_loss {config.max_log_loss}"
        )
    return thresholds, failures
