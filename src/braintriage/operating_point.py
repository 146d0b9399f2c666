"""The operating point: set a model's decision threshold from a grouped cross-validation of its recipe.

`train` sets a threshold on the model's own validation split, which holds about 60 normals: one false alarm
there moves specificity by almost 0.02, and a model that calls none of them tumor says nothing about where
its false alarms begin. A grouped cross-validation of the same recipe on the same data (`train --folds K`)
scores every training normal out of fold, so the most sensitive threshold that keeps a target specificity is
read there instead, and written into the model file with where it came from (metadata `operating_point`).
Reading the threshold off the same predictions it is scored on flatters it a little; the nested estimate
beside it (each fold's normals at the threshold the other folds set) says by how much.

    braintriage threshold model.onnx --cv runs/cv --specificity 0.95 -o model.onnx
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from braintriage.metrics import binary_metrics, threshold_for_specificity
from braintriage.modelfile import ModelFileError, read_metadata, update_metadata

# Settings that do not change what a fold model learns from its data (where and how fast it ran, how its own
# threshold and validation split were chosen, the seed of its init and folds), so a CV may differ in them.
NOT_RECIPE = {"folds", "device", "precision", "compile", "resume", "checkpoint_seconds", "max_steps", "calibrate",
              "seed", "val_fraction", "target_sensitivity", "data", "output", "run_dir"}


def recipe_differences(model_config: dict, cv_config: dict) -> list[str]:
    """The training settings in which a model and a cross-validation differ. A setting only one side records
    (older model files lack later options) must be off (0, None, False, empty) on the side that has it;
    labels `auto` matches either kind."""
    diffs = []
    for key in sorted((set(model_config) | set(cv_config)) - NOT_RECIPE):
        a, b = model_config.get(key), cv_config.get(key)
        if key == "augment":
            diffs += [f"augment.{d}" for d in recipe_differences(a or {}, b or {})]
        elif key == "labels" and "auto" in (a, b):
            continue
        elif (json.loads(json.dumps(a)) != json.loads(json.dumps(b))  # tuples from a config equal lists from JSON
              if key in model_config and key in cv_config else bool(a or b)):
            diffs.append(f"{key}: {a!r} (model) vs {b!r} (cross-validation)")
    return diffs


def read_out_of_fold(cv_dir: str | Path) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """A cross-validation's record (cv.json) and its out-of-fold fold numbers, tumor labels and P(tumor)."""
    cv_dir = Path(cv_dir)
    if not (cv_dir / "cv.json").exists() or not (cv_dir / "oof.csv").exists():
        raise ModelFileError(f"{cv_dir} holds no finished cross-validation (cv.json and oof.csv from "
                             "`braintriage train --folds K --run-dir ...`)")
    cv = json.loads((cv_dir / "cv.json").read_text())
    with (cv_dir / "oof.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    fold = np.array([int(r["fold"]) for r in rows])
    y = np.array([int(r["tumor"]) for r in rows])
    p = np.array([float(r["p_tumor"]) for r in rows])
    return cv, fold, y, p


def nested_specificity(fold: np.ndarray, y: np.ndarray, p: np.ndarray, specificity: float) -> dict[str, Any]:
    """Each fold's normals scored at the threshold the other folds' normals set: what the threshold rule
    gives on normals it did not see."""
    right, total, thresholds = 0, 0, []
    for k in np.unique(fold):
        t = threshold_for_specificity(y[fold != k], p[fold != k], specificity)
        thresholds.append(round(float(t), 4))
        normals = (fold == k) & (y == 0)
        right += int((p[normals] < t).sum())
        total += int(normals.sum())
    return {"fold_thresholds": thresholds, "normals_right": right, "normals": total,
            "specificity": right / total if total else float("nan")}


def threshold_from_cv(model_path: str | Path, cv_dir: str | Path, output: str | Path,
                      specificity: float = 0.95) -> dict[str, Any]:
    """Write `output`: the model with its threshold set to the lowest that keeps out-of-fold specificity >=
    `specificity` in the cross-validation `cv_dir` of its own recipe on its own data (refused otherwise)."""
    meta = read_metadata(model_path)
    if "ensemble" in meta:
        raise ModelFileError("an ensemble's members have different recipes: one cross-validation cannot speak "
                             "for it; set its threshold with `braintriage ensemble`")
    cv, fold, y, p = read_out_of_fold(cv_dir)
    training = meta.get("training", {})
    if training.get("data_fingerprint") != cv.get("data_fingerprint"):
        raise ModelFileError(f"{cv_dir} cross-validated other data (fingerprint "
                             f"{str(cv.get('data_fingerprint'))[:12]}..., the model's "
                             f"{str(training.get('data_fingerprint'))[:12]}...)")
    diffs = recipe_differences(training.get("config", {}), cv.get("config", {}))
    if diffs:
        raise ModelFileError(f"{cv_dir} cross-validated another recipe: " + "; ".join(diffs))
    if not (y == 0).any() or not (y == 1).any():
        raise ModelFileError(f"{cv_dir} scored no normals or no tumors out of fold: no threshold to read")
    threshold = threshold_for_specificity(y, p, specificity)
    at_threshold = binary_metrics(y, p, threshold)
    point = {
        "target_specificity": specificity,
        "cross_validation": {"folds": cv["folds"], "grouping": cv.get("grouping"), "hardware": cv.get("hardware"),
                             "images": int(len(y)), "normals": int((y == 0).sum()),
                             "data_fingerprint": cv["data_fingerprint"]},
        "out_of_fold": {k: at_threshold[k] for k in ("threshold", "specificity", "sensitivity", "accuracy",
                                                     "confusion_matrix")},
        "out_of_fold_at_0.5": {k: v for k, v in binary_metrics(y, p, 0.5).items()
                               if k in ("specificity", "sensitivity", "confusion_matrix")},
        "nested_specificity": nested_specificity(fold, y, p, specificity),
        "previous_threshold": meta["threshold"], "previous_threshold_rule": meta.get("threshold_rule"),
    }
    rule = (f"lowest threshold with specificity >= {specificity:g} on the training normals out of fold, by grouped "
            f"{cv['folds']}-fold cross-validation of this recipe")
    return update_metadata(model_path, output, {"threshold": float(threshold), "threshold_rule": rule,
                                                "operating_point": point})
