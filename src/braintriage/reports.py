"""Plots and tables for people: training curves, confusion matrices, metric tables."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from braintriage.metrics import METRIC_NAMES  # noqa: E402


def plot_training_curves(history_csv: str | Path, png: str | Path) -> None:
    with open(history_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    epoch = [int(r["epoch"]) for r in rows]
    col = lambda name: [float(r[name]) for r in rows]  # noqa: E731
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(epoch, col("train_loss"), label="train")
    ax_loss.plot(epoch, col("val_loss"), label="validation")
    ax_loss.set(title="loss (class-weighted)", xlabel="epoch")
    ax_loss.legend()
    for name in ("val_accuracy", "val_recall", "val_precision", "train_accuracy"):
        ax_metric.plot(epoch, col(name), label=name.replace("_", " "))
    ax_metric.set(title="metrics (validation at threshold 0.5)", xlabel="epoch", ylim=(0, 1.01))
    ax_metric.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def plot_confusion_matrix(matrix: list[list[int]], labels: list[str], png: str | Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(4.2 + 0.4 * len(labels), 3.6 + 0.4 * len(labels)))
    ax.imshow(matrix, cmap="Blues")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels,
           xlabel="predicted", ylabel="true", title=title)
    top = max(max(r) for r in matrix) or 1
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def metrics_table(metrics: dict, title: str):
    """A rich Table of the screening metrics."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in METRIC_NAMES:
        table.add_row(name, f"{metrics[name]:.3f}")
    table.add_row("threshold", f"{metrics['threshold']:.3f}")
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]
    table.add_row("images (tumor / no tumor)", f"{metrics['n']} ({metrics['n_tumor']} / {metrics['n_no_tumor']})")
    table.add_row("missed tumors (FN) / false alarms (FP)", f"{fn} / {fp}")
    return table
