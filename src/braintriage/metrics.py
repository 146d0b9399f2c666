"""Screening metrics for the binary decision (tumor = positive), and the operating threshold.

Sensitivity (recall on tumors) comes first: a missed tumor is the worst error this tool can make.
"""

from __future__ import annotations

import math

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


def type_log_loss(type_probs: np.ndarray, target: np.ndarray) -> float:
    """Four-class log loss: the mean of -log P(true type), probabilities clipped at 1e-7."""
    return float(-np.mean(np.log(np.clip(type_probs[np.arange(len(target)), target], 1e-7, 1))))


def threshold_for_sensitivity(y_true: np.ndarray, p_tumor: np.ndarray, target: float,
                              ceiling: float = 0.5) -> float:
    """The highest threshold that keeps sensitivity >= target on these (validation) images, capped at
    `ceiling` so the stored threshold never makes the model less sensitive than its plain 0.5 decision."""
    pos = np.sort(np.asarray(p_tumor)[np.asarray(y_true) == 1])
    if len(pos) == 0:
        return ceiling
    allowed_misses = int(np.floor((1.0 - target) * len(pos) + 1e-9))
    return float(min(pos[allowed_misses], ceiling))


def threshold_for_specificity(y_true: np.ndarray, p_tumor: np.ndarray, target: float) -> float:
    """The lowest threshold that keeps specificity >= target on these images: the most sensitive operating
    point that still clears `target` of the normals."""
    neg = np.sort(np.asarray(p_tumor, dtype=float)[np.asarray(y_true) == 0])[::-1]
    if len(neg) == 0:
        return 0.0
    allowed_alarms = int(np.floor((1.0 - target) * len(neg) + 1e-9))
    # Predict tumor at p >= threshold: just above the highest normal score that must be cleared.
    return float(np.nextafter(neg[allowed_alarms], np.inf))


def bootstrap_ci(y_true: np.ndarray, p_tumor: np.ndarray, threshold: float, n_boot: int = 1000,
                 seed: int = 0, level: float = 0.95) -> dict[str, list[float]]:
    """Percentile bootstrap confidence intervals (images resampled with replacement) for METRIC_NAMES.
    A metric undefined in a resample (no tumors, say) is left out of that metric's interval."""
    y_true, p_tumor = np.asarray(y_true).astype(int), np.asarray(p_tumor, dtype=float)
    rng = np.random.default_rng(seed)
    samples = {name: [] for name in METRIC_NAMES}
    for _ in range(n_boot):
        idx = rng.integers(0, len(y_true), len(y_true))
        m = binary_metrics(y_true[idx], p_tumor[idx], threshold)
        for name in METRIC_NAMES:
            samples[name].append(m[name])
    tail = (1 - level) / 2 * 100
    out = {}
    for name, values in samples.items():
        v = np.array(values, dtype=float)
        v = v[~np.isnan(v)]
        out[name] = [float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))] if len(v) else [
            float("nan"), float("nan")]
    return out


def calibration(y_true: np.ndarray, p_tumor: np.ndarray, bins: int = 10) -> dict:
    """Expected calibration error of P(tumor) over equal-width bins, with the reliability table."""
    y_true, p_tumor = np.asarray(y_true, dtype=float), np.asarray(p_tumor, dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p_tumor, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            conf, freq = float(p_tumor[m].mean()), float(y_true[m].mean())
            ece += m.mean() * abs(conf - freq)
            table.append({"bin": [float(edges[b]), float(edges[b + 1])], "n": int(m.sum()),
                          "mean_probability": conf, "fraction_tumor": freq})
    return {"ece": float(ece), "bins": table}


def bootstrap_proportion(hits: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
                         ) -> list[float]:
    """Percentile bootstrap interval of a proportion (for example sensitivity within one tumor type)."""
    hits = np.asarray(hits, dtype=float)
    if len(hits) == 0:
        return [float("nan"), float("nan")]
    means = np.random.default_rng(seed).choice(hits, (n_boot, len(hits))).mean(axis=1)
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))]


def wilson_interval(k: int, n: int, z: float = 1.96) -> list[float]:
    """Wilson score 95% interval of a proportion k / n (sound near 0 and 1, where a bootstrap collapses)."""
    if n == 0:
        return [float("nan"), float("nan")]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def per_source_metrics(y_true: np.ndarray, p_tumor: np.ndarray, source: np.ndarray, threshold: float,
                       type_right: np.ndarray | None = None) -> dict[str, dict]:
    """Each source's share of a pooled result at one threshold: its tumors' sensitivity and its normals'
    specificity (Wilson 95% intervals; None where it has none), and the ROC-AUC of its tumors against the
    normals of all sources, so that a source of tumors alone (figshare) is ranked too. A recipe that keeps the
    pooled specificity by raising the threshold can lose one source's tumors while the pooled figure holds.
    With `type_right` (per image: 1 where the most likely of the four classes is its label, 0 where not, NaN
    where its type is unknown): each source's four-class accuracy over its images of known type, too."""
    y_true, p_tumor, source = np.asarray(y_true).astype(int), np.asarray(p_tumor, float), np.asarray(source)
    normals = p_tumor[y_true == 0]
    out = {}
    for name in sorted(set(source.tolist())):
        tumors = p_tumor[(source == name) & (y_true == 1)]
        own_normals = p_tumor[(source == name) & (y_true == 0)]
        hits, passes = int((tumors >= threshold).sum()), int((own_normals < threshold).sum())
        ranked = len(tumors) and len(normals)
        out[name] = {
            "tumors": len(tumors), "normals": len(own_normals),
            "sensitivity": hits / len(tumors) if len(tumors) else None,
            "sensitivity_ci95": wilson_interval(hits, len(tumors)) if len(tumors) else None,
            "specificity": passes / len(own_normals) if len(own_normals) else None,
            "specificity_ci95": wilson_interval(passes, len(own_normals)) if len(own_normals) else None,
            "roc_auc_against_all_normals": float(roc_auc_score(
                np.r_[np.ones(len(tumors)), np.zeros(len(normals))], np.r_[tumors, normals])) if ranked else None,
        }
        if type_right is not None:
            out[name].update(_type_accuracy(np.asarray(type_right, float)[source == name]))
    return out


def _type_accuracy(type_right: np.ndarray) -> dict:
    """Four-class accuracy over the images of known type (`type_right` not NaN), with its Wilson interval."""
    known = type_right[~np.isnan(type_right)]
    right = int(known.sum())
    return {"typed": len(known), "type_accuracy": right / len(known) if len(known) else None,
            "type_accuracy_ci95": wilson_interval(right, len(known)) if len(known) else None}


def describe_per_source(per_source: dict[str, dict]) -> list[str]:
    """One line per source of `per_source_metrics`, for logs and reports."""
    lines = []
    for name, m in per_source.items():
        parts = []
        if m["tumors"]:
            lo, hi = m["sensitivity_ci95"]
            parts.append(f"sensitivity {m['sensitivity']:.3f} ({lo:.3f}-{hi:.3f}) of {m['tumors']} tumors")
        if m["normals"]:
            lo, hi = m["specificity_ci95"]
            parts.append(f"specificity {m['specificity']:.3f} ({lo:.3f}-{hi:.3f}) of {m['normals']} normals")
        if m["roc_auc_against_all_normals"] is not None:
            parts.append(f"ROC-AUC against all normals {m['roc_auc_against_all_normals']:.3f}")
        if m.get("type_accuracy") is not None:
            lo, hi = m["type_accuracy_ci95"]
            parts.append(f"4-class accuracy {m['type_accuracy']:.3f} ({lo:.3f}-{hi:.3f}) of {m['typed']} of known type")
        lines.append(f"{name}: " + ", ".join(parts))
    return lines
