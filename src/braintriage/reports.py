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


def print_audit(a: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{a['dataset']} ({a['layout']} layout, {a['images']} images, {a['seconds']} s)")
    table.add_column("split")
    classes = sorted({c for s in a["splits"].values() for c in s["classes"]})
    for c in classes:
        table.add_column(c, justify="right")
    table.add_column("total", justify="right")
    for name, s in a["splits"].items():
        table.add_row(name, *[str(s["classes"].get(c, 0)) for c in classes], str(s["images"]))
    console.print(table)
    sizes = a["sizes"]
    console.print(f"sizes: {sizes['distinct']} distinct, most common {sizes['most_common']}; "
                  f"width min/median/max {sizes['width_min_median_max']}; modes {a['modes']}")
    console.print(f"unreadable files: {len(a['unreadable'])}")
    for row in a["unreadable"]:
        console.print(f"  [red]{row['split']}/{row['path']}[/red]: {row['error']}")
    ex, near = a["exact_duplicates"], a["near_duplicates"]
    console.print(f"exact duplicates: {ex['file_identical_groups']} groups of identical files "
                  f"({ex['file_identical_images']} images), {ex['pixel_identical_groups']} of identical pixels "
                  f"({ex['pixel_identical_images']} images)")
    console.print(f"near duplicates (pHash distance <= {near['max_hamming_distance']}): {near['groups']} groups, "
                  f"{near['images_in_groups']} images, largest {near['largest_group']}")
    lc = a["label_conflicts"]
    console.print(f"label conflicts: {lc['pixel_identical_groups']} groups of pixel-identical images with "
                  f"different classes; {lc['pairs']} near-duplicate pairs with different classes "
                  f"({lc['images']} images; {lc['pairs_tumor_vs_no_tumor']} tumor vs no tumor), candidates to inspect")
    console.print(f"groups crossing splits: {a['cross_split_groups']['groups']}")
    if "held_out_images" in a:
        console.print(f"[bold]leaked images: {a['leaked_images']} of {a['held_out_images']}[/bold] non-training "
                      f"images have a duplicate in training ({a['leaked_pixel_identical']} pixel-identical, "
                      f"{a['leaked_at_phash_distance_0']} at pHash distance 0); by class {a['leaked_by_class']}")
