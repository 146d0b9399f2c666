"""Plots and tables for people: training curves, confusion matrices, metric tables."""

from __future__ import annotations

import io

import numpy as np

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from braintriage.metrics import METRIC_NAMES, binary_metrics  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def training_curves_png(history: list[dict]) -> bytes:
    epoch = [int(r["epoch"]) for r in history]
    col = lambda name: [float(r[name]) for r in history]  # noqa: E731
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(epoch, col("train_loss"), label="train")
    ax_loss.plot(epoch, col("val_loss"), label="validation")
    ax_loss.set(title="loss (class-weighted)", xlabel="epoch")
    ax_loss.legend()
    for name in ("val_accuracy", "val_recall", "val_precision", "train_accuracy"):
        suffix = " (training labels)" if name.startswith("train") else ""
        ax_metric.plot(epoch, col(name), label=name.replace("_", " ") + suffix)
    ax_metric.set(title="metrics (validation at threshold 0.5)", xlabel="epoch",
                  ylim=(0, 1.01))
    ax_metric.legend(loc="lower right")
    return _png(fig)


def confusion_matrix_png(matrix: list[list[int]], labels: list[str], title: str) -> bytes:
    fig, ax = plt.subplots(figsize=(4.2 + 0.4 * len(labels), 3.6 + 0.4 * len(labels)))
    ax.imshow(matrix, cmap="Blues")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels,
           xlabel="predicted", ylabel="true", title=title)
    top = max(max(r) for r in matrix) or 1
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black")
    return _png(fig)


def roc_pr_png(y_true: np.ndarray, p_tumor: np.ndarray, threshold: float) -> tuple[bytes, bytes]:
    from sklearn.metrics import precision_recall_curve, roc_curve

    fpr, tpr, thr = roc_curve(y_true, p_tumor)
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot(fpr, tpr)
    at = binary_metrics(y_true, p_tumor, threshold)
    ax.plot([1 - at["specificity"]], [at["sensitivity"]], "o", label=f"threshold {threshold:.2f}")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(title=f"ROC (AUC {at['roc_auc']:.3f})", xlabel="1 - specificity", ylabel="sensitivity")
    ax.legend(loc="lower right")
    roc = _png(fig)
    precision, recall, _ = precision_recall_curve(y_true, p_tumor)
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot(recall, precision)
    ax.plot([at["sensitivity"]], [at["precision"]], "o", label=f"threshold {threshold:.2f}")
    ax.set(title="precision-recall", xlabel="recall (sensitivity)", ylabel="precision", ylim=(0, 1.02))
    ax.legend(loc="lower left")
    return roc, _png(fig)


def reliability_png(cal: dict) -> bytes:
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    conf = [b["mean_probability"] for b in cal["bins"]]
    freq = [b["fraction_tumor"] for b in cal["bins"]]
    sizes = [20 + 200 * b["n"] / max(1, max(x["n"] for x in cal["bins"])) for b in cal["bins"]]
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ax.plot(conf, freq, "-")
    ax.scatter(conf, freq, s=sizes, label="bins (area ~ images)")
    ax.set(title=f"reliability (ECE {cal['ece']:.3f})", xlabel="mean P(tumor) in bin",
           ylabel="fraction with tumor", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    return _png(fig)


def evaluation_figures(report: dict, y_true: np.ndarray, p_tumor: np.ndarray, metadata: dict) -> dict[str, bytes]:
    """Every figure of an evaluation, as PNG bytes by name."""
    threshold = report["metrics"]["threshold"]
    figures = {"confusion_matrix": confusion_matrix_png(report["metrics"]["confusion_matrix"],
                                                        ["no_tumor", "tumor"], f"threshold {threshold:.3f}")}
    if "type_confusion_matrix" in report:
        figures["type_confusion_matrix"] = confusion_matrix_png(report["type_confusion_matrix"],
                                                                report["type_labels"], "tumor type")
    if 0 < y_true.sum() < len(y_true):
        figures["roc_curve"], figures["pr_curve"] = roc_pr_png(y_true, p_tumor, threshold)
    figures["reliability"] = reliability_png(report["calibration"])
    if metadata.get("history"):
        figures["training_curves"] = training_curves_png(metadata["history"])
    return figures


def _fmt(v: float) -> str:
    return "n/a" if v != v else f"{v:.3f}"  # NaN: undefined on this subset (no normals, say)


def metrics_table(metrics: dict, title: str, ci95: dict | None = None):
    """A rich Table of the screening metrics, with 95% intervals when given."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title))  # the title names a folder: printed as it is, never read as markup
    table.add_column("metric")
    table.add_column("value", justify="right")
    if ci95:
        table.add_column("95% CI (bootstrap)", justify="right")
    for name in METRIC_NAMES:
        row = [name, _fmt(metrics[name])]
        if ci95:
            row.append(f"{_fmt(ci95[name][0])} - {_fmt(ci95[name][1])}")
        table.add_row(*row)
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]
    extra = [""] if ci95 else []
    table.add_row("threshold", f"{metrics['threshold']:.3f}", *extra)
    table.add_row("images (tumor / no tumor)", f"{metrics['n']} ({metrics['n_tumor']} / {metrics['n_no_tumor']})",
                  *extra)
    table.add_row("missed tumors (FN) / false alarms (FP)", f"{fn} / {fp}", *extra)
    return table


def print_audit(a: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    table = Table(title=escape(f"{a['dataset']} ({a['layout']} layout, {a['images']} images, {a['seconds']} s)"))
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
        console.print(f"  [red]{escape(row['split'])}/{escape(row['path'])}[/red]: {escape(row['error'])}")
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
