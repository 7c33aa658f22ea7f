"""The evaluation report: candidate and baseline on the holdout, and the verdict."""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from facilflow_assets.atomic_files import write_json_atomic
from facilflow_assets.metadata import markdown_table
from facilflow_assets.use_case import GatesSpec

GATE_OVERRIDE = "Overrides the use case file's gate of this name for this run."


class EvaluationConfig(dg.Config):
    """Which run to evaluate, and any gate overriding the use case file's for this run."""

    candidate_run_id: str = Field(
        default="",
        description="Evaluate the model of this training run, making it the candidate; the "
        "latest trained model when empty.",
    )
    min_auc: float | None = Field(default=None, ge=0, le=1, description=GATE_OVERRIDE)
    min_auc_lift: float | None = Field(default=None, description=GATE_OVERRIDE)
    max_log_loss: float | None = Field(default=None, gt=0, description=GATE_OVERRIDE)
    max_rmse: float | None = Field(default=None, gt=0, description=GATE_OVERRIDE)
    min_rmse_lift: float | None = Field(default=None, description=GATE_OVERRIDE)

    def gates(self, use_case: GatesSpec) -> GatesSpec:
        """The use case's gates with this run's overrides."""
        overrides = {name: getattr(self, name) for name in GatesSpec.model_fields}
        return use_case.model_copy(update={k: v for k, v in overrides.items() if v is not None})


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
    primary_metric: str  # the metric judged against the baseline: auc, or rmse
    lift: float  # the candidate's relative gain on it (auc: ratio - 1; rmse: 1 - ratio)
    thresholds: dict[str, float]
    failures: list[str]  # one sentence per threshold not cleared
    model_digest: str  # of the model files scored: what registration and approval bind to
    decision_threshold: float | None = None  # binary: where a probability becomes positive
    decision: str = ""  # how it was chosen, in words

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
                f"Baseline: {self.baseline_description}."
                + (
                    ""
                    if self.decision_threshold is None
                    else f" Decision threshold {self.decision_threshold:.4f} ({self.decision})."
                ),
                "",
                markdown_table(self.comparison()),
                "",
                f"{self.primary_metric.upper()} lift over the baseline: {self.lift:+.2%}. "
                f"Verdict: {verdict}",
            ]
        )


def judge(
    candidate: dict[str, float], primary: str, lift: float, config: GatesSpec
) -> tuple[dict[str, float], list[str]]:
    """The thresholds applied to a candidate judged on `primary` (auc or rmse), and a
    sentence for each one it misses."""
    if primary == "auc":
        limits = [
            ("min_auc", candidate["auc"] < config.min_auc, f"AUC {candidate['auc']:.4f}"),
            ("min_auc_lift", lift < config.min_auc_lift, f"AUC lift over the baseline {lift:+.4f}"),
            (
                "max_log_loss",
                candidate["log_loss"] > config.max_log_loss,
                f"log loss {candidate['log_loss']:.4f}",
            ),
        ]
    else:
        limits = [
            (
                "min_rmse_lift",
                lift < config.min_rmse_lift,
                f"RMSE reduction against the baseline {lift:+.4f}",
            ),
        ]
        if config.max_rmse is not None:
            limits.append(
                ("max_rmse", candidate["rmse"] > config.max_rmse, f"RMSE {candidate['rmse']:.4f}")
            )
    thresholds = {name: getattr(config, name) for name, _, _ in limits}
    failures = [
        f"{what} is {'below' if name.startswith('min') else 'above'} {name} "
        + (f"{thresholds[name]:+}" if name.endswith("lift") else f"{thresholds[name]}")
        for name, missed, what in limits
        if missed
    ]
    return thresholds, failures
