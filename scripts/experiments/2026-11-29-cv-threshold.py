"""Session 13: the bundled recipe's grouped cross-validated specificity on `Training` normals (issue 7 asks
>= 0.95), and the threshold it gives the bundled model. Written, with its rule, while the cross-validation
trained its first fold, before any of its results and before any `Testing` score at a new threshold.

    braintriage train .devdata/training-200.npz --arch resnet18-w32 --labels type --image-size 200 \
      --epochs 150 --batch-size 128 --lr 2e-3 --weight-decay 0.05 --patience 40 --zoom 0.75 1.3 \
      --rotation 15 --translate 0.1 --gamma 0.6 1.6 --noise 0.03 --brightness 0.6 1.5 --seed 2 \
      --folds 3 --run-dir runs/cv-cpu-bundled-3fold
    python scripts/experiments/2026-11-29-cv-threshold.py runs/cv-cpu-bundled-3fold

Why: every cross-validation so far was of the 80-epoch laptop recipe; the bundled model's own recipe
(scripts/train_bundled_model.sh: 150 epochs at 200 px, batch 128) was never cross-validated, so the number the
issue asks for was not measured for the model that ships. Five folds of it take about 4 hours on these 2 cores
(longer than a session); three folds about 2.2. Each fold model trains on two thirds of `Training` (the bundled
model on 85%), so this reads the recipe's specificity a little pessimistically.

The bundled model's threshold is 0.5 today, by a sensitivity rule on its 56 validation normals, none of which
it calls tumor (their P(tumor) is at most 0.04). The operating point the issue asks for is the most sensitive
one that keeps cross-validated specificity >= 0.95, which may lie on either side of 0.5.

Rule: the bundled model's stored threshold becomes t_cv, the lowest threshold at which the pooled out-of-fold
P(tumor) calls at least 95% of `Training`'s 395 normals right (metrics.threshold_for_specificity), if
    A1. the bundled model itself keeps specificity >= 0.95 on its own 56 validation normals at t_cv (at most 2
        called tumor), so the recipe's threshold also holds for the model it is given to.
Either direction is adopted: below 0.5 it finds more tumors at the specificity the issue allows; above 0.5 the
recipe does not reach 0.95 at 0.5 and the issue's floor comes first. Reported beside the decision, not gating
it: the pooled specificity at 0.5 (the measured target) with a Wilson 95% interval, tumors missed at 0.5 and at
t_cv, and a nested estimate of the specificity t_cv really gives (each fold's threshold set on the other two
folds' normals, scored on its own). `Testing` is scored once afterwards, for the record, and can only veto:
below the floors the shipped model's tests hold it to (accuracy >= 0.88, sensitivity >= 0.85) it would not ship.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

from adoption import BUNDLED, BUNDLED_CACHE  # beside this script
from braintriage.cache import DecodedSet
from braintriage.inference import Predictor
from braintriage.metrics import threshold_for_specificity
from braintriage.modelfile import read_metadata
from braintriage.operating_point import nested_specificity
from braintriage.splits import model_validation_split

TARGET_SPECIFICITY = 0.95
CLASS_NAMES = ("no_tumor", "glioma", "meningioma", "pituitary")  # the bundled model's, in oof.csv's column order


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """Wilson score 95% interval of a proportion k / n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(float(centre - half), 4), round(float(centre + half), 4)]


def read_oof(run_dir: Path) -> tuple[np.ndarray, ...]:
    """Fold, tumor (0/1), P(tumor), type index and the four type probabilities of each image, out of fold."""
    with open(run_dir / "oof.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    fold = np.array([int(r["fold"]) for r in rows])
    y = np.array([int(r["tumor"]) for r in rows])
    p = np.array([float(r["p_tumor"]) for r in rows])
    target = np.array([CLASS_NAMES.index(r["tumor_type"]) for r in rows])
    probs = np.array([[float(r[f"p_{c}"]) for c in CLASS_NAMES] for r in rows])
    return fold, y, p, target, probs


def verdict_counts(y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    normals_right = int((p[y == 0] < threshold).sum())
    return {"threshold": round(float(threshold), 4), "normals_right": normals_right, "normals": int((y == 0).sum()),
            "specificity": round(normals_right / int((y == 0).sum()), 4),
            "specificity_ci95": wilson(normals_right, int((y == 0).sum())),
            "tumors_missed": int((p[y == 1] < threshold).sum()), "tumors": int(y.sum())}


def bundled_validation(threshold: float) -> dict:
    decoded = DecodedSet.load(BUNDLED_CACHE)
    val_idx = model_validation_split(read_metadata(BUNDLED), decoded)
    p, _, _ = Predictor(BUNDLED).predict_arrays(decoded.images[val_idx])
    y = decoded.tumor[val_idx]
    return {"at_0.5": verdict_counts(y, p, 0.5), "at_t_cv": verdict_counts(y, p, threshold)}


def main(run_dir: Path) -> dict:
    fold, y, p, target, probs = read_oof(run_dir)
    t_cv = threshold_for_specificity(y, p, TARGET_SPECIFICITY)
    result = {
        "run_dir": str(run_dir), "folds": int(len(np.unique(fold))), "images": int(len(y)),
        "pooled_out_of_fold": {
            "at_0.5": verdict_counts(y, p, 0.5), "at_t_cv": verdict_counts(y, p, t_cv),
            "type_accuracy": round(float((probs.argmax(1) == target).mean()), 4),
            "nested_at_t_cv": nested_specificity(fold, y, p, TARGET_SPECIFICITY)},
        "t_cv": round(float(t_cv), 4),
    }
    result["bundled_validation"] = bundled_validation(t_cv)
    result["A1"] = result["bundled_validation"]["at_t_cv"]["specificity"] >= TARGET_SPECIFICITY
    result["new_threshold"] = result["t_cv"] if result["A1"] else None
    return result


if __name__ == "__main__":
    out = main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/cv-cpu-bundled-3fold"))
    print(json.dumps(out, indent=2))
