"""Figures of a model, for MLflow artifacts and the Dagster UI alike."""

import base64
import io
from typing import Any

import lightgbm as lgb
import matplotlib
import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, roc_curve

matplotlib.use("Agg")  # no display: figures are only ever written to files
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def feature_importance(booster: lgb.Booster, top: int = 20) -> Figure:
    """Total gain per feature, largest first."""
    gains = booster.feature_importance(importance_type="gain")
    order = np.argsort(gains)[::-1][:top][::-1]
    names = np.array(booster.feature_name())[order]
    figure, axes = plt.subplots(figsize=(8, 0.3 * len(order) + 1.2))
    axes.barh(names, gains[order] / gains.sum())
    axes.set_xlabel("share of total gain")
    axes.set_title(f"Feature importance (top {len(order)})")
    figure.tight_layout()
    return figure


def roc(labels: np.ndarray, scores: dict[str, np.ndarray]) -> Figure:
    figure, axes = plt.subplots(figsize=(5.5, 5))
    for name, score in scores.items():
        false_positive, true_positive, _ = roc_curve(labels, score)
        axes.plot(false_positive, true_positive, label=name)
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, holdout")
    axes.legend(loc="lower right")
    figure.tight_layout()
    return figure


def calibration(
    labels: np.ndarray, scores: dict[str, np.ndarray], label: str, bins: int = 10
) -> Figure:
    figure, axes = plt.subplots(figsize=(5.5, 5))
    for name, score in scores.items():
        observed, predicted = calibration_curve(labels, score, n_bins=bins, strategy="quantile")
        axes.plot(predicted, observed, marker="o", label=name)
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set(
        xlabel=f"predicted probability of {label}",
        ylabel=f"observed share of {label}",
        title="Calibration, holdout",
    )
    axes.legend(loc="upper left")
    figure.tight_layout()
    return figure


def confusion(labels: np.ndarray, predicted: np.ndarray, threshold: float, label: str) -> Figure:
    counts = confusion_matrix(labels, predicted, labels=[0, 1])
    figure, axes = plt.subplots(figsize=(4.5, 4))
    axes.imshow(counts, cmap="Blues")
    for (row, column), count in np.ndenumerate(counts):
        axes.text(column, row, f"{count:,}", ha="center", va="center")
    axes.set_xticks([0, 1], ["0", "1"])
    axes.set_yticks([0, 1], ["0", "1"])
    axes.set(
        xlabel=f"predicted {label}",
        ylabel=f"actual {label}",
        title=f"Confusion at {threshold:g}",
    )
    figure.tight_layout()
    return figure


def predicted_vs_actual(
    actual: np.ndarray, predictions: dict[str, np.ndarray], label: str, sample: int = 5000
) -> Figure:
    """Each model's predictions against the actual amounts (a sample of the rows), with the
    diagonal where they would agree."""
    rows = np.random.default_rng(0).permutation(len(actual))[:sample]
    figure, axes = plt.subplots(figsize=(5.5, 5))
    for name, predicted in predictions.items():
        axes.scatter(actual[rows], predicted[rows], s=4, alpha=0.3, label=name)
    low, high = np.percentile(actual, [0.5, 99.5])
    axes.plot([low, high], [low, high], linestyle=":", color="grey")
    axes.set(
        xlabel=f"actual {label}",
        ylabel=f"predicted {label}",
        xlim=(low, high),
        title="Predicted against actual, holdout",
    )
    axes.legend(loc="upper left", markerscale=3)
    figure.tight_layout()
    return figure


def residuals(actual: np.ndarray, predictions: dict[str, np.ndarray], label: str) -> Figure:
    """The distribution of each model's error (predicted minus actual)."""
    errors = {name: predicted - actual for name, predicted in predictions.items()}
    low, high = np.percentile(np.concatenate(list(errors.values())), [1, 99])
    figure, axes = plt.subplots(figsize=(6, 3.5))
    for name, error in errors.items():
        axes.hist(error, bins=np.linspace(low, high, 61), alpha=0.5, label=name)
    axes.axvline(0, linestyle=":", color="grey")
    axes.set(xlabel=f"predicted minus actual {label}", ylabel="rows", title="Residuals, holdout")
    axes.legend(loc="upper right")
    figure.tight_layout()
    return figure


def score_histogram(
    scores: np.ndarray, threshold: float | None, label: str, subject: str
) -> Figure:
    """The distribution of a day's predictions: probabilities with the decision threshold,
    or predicted amounts (`threshold` None)."""
    figure, axes = plt.subplots(figsize=(6, 3.5))
    if threshold is None:
        axes.hist(scores, bins=60)
        axes.set(xlabel=f"predicted {label}", ylabel=f"{subject}s", title="Prediction distribution")
    else:
        axes.hist(scores, bins=np.linspace(0, 1, 41).tolist())
        axes.axvline(threshold, linestyle=":", color="grey", label=f"threshold {threshold:g}")
        axes.set(
            xlabel=f"predicted probability of {label}",
            ylabel=f"{subject}s",
            title="Score distribution",
        )
        axes.legend(loc="upper right")
    figure.tight_layout()
    return figure


def throughput_and_latency_by_minute(
    minutes: dict[str, tuple[list, list, list]], sla_ms: float, min_rps: float | None
) -> Figure:
    """Requests per second (above) and p95 latency (below) per minute of each version,
    `minutes[version] = (times, rps, p95s)`, against the floor and the SLA."""
    figure, (throughput, latency) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    for version, (times, rps, p95s) in minutes.items():
        line = throughput.plot(times, rps, marker=".", label=f"version {version}")[0]
        latency.plot(times, p95s, marker=".", color=line.get_color())
    if min_rps is not None:
        throughput.axhline(min_rps, linestyle=":", color="red", label=f"floor {min_rps:g}/s")
    latency.axhline(sla_ms, linestyle=":", color="red", label=f"SLA {sla_ms:g} ms")
    throughput.set(ylabel="requests per second", title="Throughput and latency per minute")
    latency.set(xlabel="minute (UTC)", ylabel="p95 latency (ms)")
    throughput.legend(loc="upper left", fontsize="small")
    latency.legend(loc="upper left", fontsize="small")
    figure.autofmt_xdate()
    figure.tight_layout()
    return figure


def metric_over_days(
    days: dict[str, tuple[list, list]],
    holdout: dict[str, float],
    metric: str,
    estimated: dict[str, tuple[list, list]] | None = None,
) -> Figure:
    """A metric per day of each version, `days[version] = (dates, values)`, against each
    version's holdout figure (a dotted line), and where given its estimate (dashed)."""
    figure, axes = plt.subplots(figsize=(7, 3.5))
    colors: dict[str, Any] = {}  # matplotlib's color of each version's line
    for version, (dates, values) in days.items():
        line = axes.plot(dates, values, marker=".", label=f"version {version}")[0]
        colors[version] = line.get_color()
    for version, (dates, values) in (estimated or {}).items():
        line = axes.plot(
            dates,
            values,
            linestyle="--",
            color=colors.get(version),
            label=f"version {version} estimated",
        )[0]
        colors.setdefault(version, line.get_color())
    for version, value in holdout.items():
        if version in colors:
            axes.axhline(
                value,
                linestyle=":",
                color=colors[version],
                label=f"version {version} holdout {value:.3f}",
            )
    axes.set(xlabel="day", ylabel=metric, title=f"{metric} per day: realized and estimated")
    if colors:
        axes.legend(loc="lower left", fontsize="small")
    figure.autofmt_xdate()
    figure.tight_layout()
    return figure


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def markdown_image(image: bytes, title: str) -> str:
    """An inline image for Dagster's markdown metadata."""
    return f"![{title}](data:image/png;base64,{base64.b64encode(image).decode()})"
