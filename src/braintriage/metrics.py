"""Screening metrics for the binary decision (tumor = positive), and the operating threshold.

Sensitivity (recall on tumors) comes first: a missed tumor is the worst error this tool can make.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score

METRIC_NAMES = ("accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc")


def binary_metrics(y_true: np.ndarray, p_tumor: np.ndarray, threshold: float) -> dict:
    """Metrics at `threshold` (predict tumor when P(tumor) >= threshold), with the confusion matrix."""
    y_true = np.asarray(y_true).astype(int)
    y_pred = (np.asarray(p_tumor) >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel().tolist()

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    sensitivity, precision = ratio(tp, tp + fn), ratio(tp, tp + fp)
    return {
        "n": len(y_true), "n_tumor": tp + fn, "n_no_tumor": tn + fp, "threshold": float(threshold),
        "accuracy": ratio(tp + tn, len(y_true)),
        "sensitivity": sensitivity,
        "specificity": ratio(tn, tn + fp),
        "precision": precision,
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "roc_auc": float(roc_auc_score(y_true, p_tumor)) if 0 < y_true.sum() < len(y_true) else float("nan"),
        # rows: true no_tumor, tumor; columns: predicted no_tumor, tumor
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }


def threshold_for_sensitivity(y_true: np.ndarray, p_tumor: np.ndarray, target: float,
                              ceiling: float = 0.5) -> float:
    """The highest threshold that keeps sensitivity >= target on these (validation) images, capped at
    `ceiling` so the stored threshold never makes the model less sensitive than its plain 0.5 decision."""
    pos = np.sort(np.asarray(p_tumor)[np.asarray(y_true) == 1])
    if len(pos) == 0:
        return ceiling
    allowed_misses = int(np.floor((1.0 - target) * len(pos) + 1e-9))
    return float(min(pos[allowed_misses], ceiling))
