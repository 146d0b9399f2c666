"""The operating point: set a model's decision threshold from a grouped cross-validation of its recipe.

`train` sets a threshold on the model's own validation split, which holds about 60 normals: one false alarm
there moves specificity by almost 0.02, and a model that calls none of them tumor says nothing about where
its false alarms begin. A grouped cross-validation of the same recipe on the same data (`train --folds K`)
scores every training normal out of fold, so the most sensitive threshold that keeps a target specificity is
read there instead, and written into the model file with where it came from (metadata `operating_point`).
Reading the threshold off the same predictions it is scored on flatters it a little; the nested estimate
beside it (each fold's normals at the threshold the other folds set) says by how much.

The same out-of-fold predictions set the two other numbers a verdict needs (verdicts.py): the *uncertain band*
around the threshold, where tumors and normals were mixed, and the *type display rule*, the lowest
probability at which a suspected tumor's most likely type was right often enough to be shown.

    braintriage threshold model.onnx --cv runs/cv --specificity 0.95 -o model.onnx
"""

from __future__ import annotations

import csv
import gzip
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


def recipe_differences(model_config: dict, cv_config: dict, defaults: dict | None = None) -> list[str]:
    """The training settings in which a model and a cross-validation differ. A setting only one side records
    (older model files lack later options) must be off (0, None, False, empty) on the side that has it, or at
    its default (`train.TrainConfig`'s: an option is added with the behaviour of the code before it as its
    default); labels `auto` matches either kind."""
    defaults = training_defaults() if defaults is None else defaults
    diffs = []
    for key in sorted((set(model_config) | set(cv_config)) - NOT_RECIPE):
        a, b = model_config.get(key), cv_config.get(key)
        if key == "augment":
            diffs += [f"augment.{d}" for d in recipe_differences(a or {}, b or {}, defaults={})]
        elif key == "labels" and "auto" in (a, b):
            continue
        elif (as_json(a) != as_json(b) if key in model_config and key in cv_config
              else bool(a or b) and as_json(a if key in model_config else b) != as_json(defaults.get(key))):
            diffs.append(f"{key}: {a!r} (model) vs {b!r} (cross-validation)")
    return diffs


def as_json(value: Any) -> Any:
    """`value` as JSON gives it back: tuples from a config equal lists read from a file."""
    return json.loads(json.dumps(value))


def training_defaults() -> dict[str, Any]:
    """`braintriage train`'s default for each setting a model file's training config records."""
    import dataclasses

    from braintriage.train import TrainConfig

    return {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}


def read_out_of_fold(cv_dir: str | Path) -> tuple[dict, list[dict[str, str]]]:
    """A cross-validation's record (cv.json) and its out-of-fold rows (oof.csv: fold, tumor, p_tumor, and for a
    type model tumor_type and p_<class>)."""
    cv_dir = Path(cv_dir)
    if not (cv_dir / "cv.json").exists() or not (cv_dir / "oof.csv").exists():
        raise ModelFileError(f"{cv_dir} holds no finished cross-validation (cv.json and oof.csv from "
                             "`braintriage train --folds K --run-dir ...`)")
    cv = json.loads((cv_dir / "cv.json").read_text())
    with (cv_dir / "oof.csv").open(newline="") as f:
        return cv, list(csv.DictReader(f))


def kept_folds(cv_dir: str | Path) -> list[dict]:
    """The fold records experiments/run.py kept of a cross-validation (experiments/cv/NAME/fold-K.json.gz: config,
    data fingerprint, fold, oof_rows), in fold order, as many as are kept so far."""
    return [json.loads(gzip.decompress(f.read_bytes())) for f in sorted(Path(cv_dir).glob("fold-*.json.gz"))]


def out_of_fold_rows(cv_dir: str | Path) -> list[dict]:
    """A finished cross-validation's out-of-fold rows: its oof.csv (a run directory), or, on a machine without the
    run, every fold experiments/run.py kept of it (experiments/cv/NAME/fold-K.json.gz)."""
    cv_dir = Path(cv_dir)
    if (cv_dir / "oof.csv").exists():
        return read_out_of_fold(cv_dir)[1]
    folds = kept_folds(cv_dir)
    if not folds or len(folds) != folds[0]["config"]["folds"]:
        raise ModelFileError(f"{cv_dir} holds no finished cross-validation (oof.csv, or all its kept folds "
                             f"fold-K.json.gz: {len(folds)} here)")
    return [row for fold in folds for row in fold["oof_rows"]]


def out_of_fold_scores(rows: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each out-of-fold row's fold, label (1 = tumor) and P(tumor), as read_out_of_fold gives the rows."""
    return (np.array([int(r["fold"]) for r in rows]), np.array([int(r["tumor"]) for r in rows]),
            np.array([float(r["p_tumor"]) for r in rows]))


def out_of_fold_sources(rows: list[dict[str, str]]) -> np.ndarray:
    """Each out-of-fold row's source: the first part of its path (a multi-source CV names rows SOURCE/...)."""
    return np.array([r["path"].split("/", 1)[0] for r in rows])


def out_of_fold_type_right(rows: list[dict[str, str]]) -> np.ndarray | None:
    """Per out-of-fold row: 1.0 where its most likely of the four classes (no tumor and the tumor types) is its
    label, 0.0 where another is, NaN where its type is unknown (Br35H's tumors); None for a binary model's CV.
    The four-class accuracy these give is the in-source counterpart of `Testing`'s four-class figure."""
    types = out_of_fold_types(rows)
    if types is None or "p_no_tumor" not in rows[0]:
        return None
    label, probs, names = types
    classes = np.array(["no_tumor", *names])
    best = classes[np.c_[np.array([float(r["p_no_tumor"]) for r in rows]), probs].argmax(axis=1)]
    return np.where(np.isin(label, classes), (best == label).astype(float), np.nan)


def out_of_fold_types(rows: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """Out-of-fold tumor-type labels ('' where unknown) and P(type) per tumor type (N, K), with the type names;
    None for a cross-validation of a binary model (no type columns)."""
    names = [c.removeprefix("p_") for c in (rows[0] if rows else {}) if c.startswith("p_")
             and c not in ("p_tumor", "p_no_tumor")]
    if not names:
        return None
    probs = np.array([[float(r[f"p_{n}"]) for n in names] for r in rows])
    return np.array([r.get("tumor_type", "") for r in rows]), probs, names


# A scan is clearly low (high) where, out of fold, the tumor rate among training images of that score, with
# tumors and normals weighted equally, is at most 0.1 (at least 0.9): a likelihood ratio of 1:9 (9:1),
# whatever the tumor prevalence of the training sources. Between the two, tumors and normals are mixed.
BAND_RATES = (0.1, 0.9)
# ...and clearly low only where at most this share of the out-of-fold normals lie below (session 39). In
# distribution hardly any tumor scores low, so the rate rule alone left 90% of the normals under the edge, at P 0.26
# for the bundled recipe; but tumors of a collection the model never trained on score far lower (with Br35H held
# out, 16-20% of its tumors under 0.26, 8-12% under 0.05). The out-of-fold data cannot show where such tumors fall,
# only what a lower edge costs: here, one normal scan in five read by a person instead of one in ten.
BAND_NORMALS_CLEAR = 0.8
TYPE_PRECISION = 0.95  # a tumor type is shown where out of fold it was right at least this often


def uncertain_band(y: np.ndarray, p: np.ndarray, threshold: float, rates: tuple[float, float] = BAND_RATES,
                   normals_clear: float = BAND_NORMALS_CLEAR) -> dict[str, Any]:
    """The band [low, high) around `threshold` where out-of-fold scores are neither clearly low nor clearly
    high: the balanced tumor rate (isotonic regression of the label on the score, classes weighted equally)
    is above rates[0] and below rates[1], and at most `normals_clear` of the normals lie below it. The band
    always holds the threshold."""
    from sklearn.isotonic import IsotonicRegression

    weight = np.where(y == 1, 0.5 / max((y == 1).sum(), 1), 0.5 / max((y == 0).sum(), 1))
    curve = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(p, y, sample_weight=weight)
    grid = np.linspace(0, 1, 10001)
    rate = curve.predict(grid)
    low = float(grid[rate <= rates[0]].max()) if (rate <= rates[0]).any() else 0.0
    high = float(grid[rate >= rates[1]].min()) if (rate >= rates[1]).any() else 1.0
    low, high = min(low, clear_edge(y, p, normals_clear), threshold), max(high, threshold)
    return {"low": low, "high": high,
            "rule": (f"out of fold, tumors and normals weighted equally, the tumor rate at a score is above "
                     f"{rates[0]:g} and below {rates[1]:g} (isotonic regression), and at most "
                     f"{normals_clear:g} of the normals score below the band"),
            "out_of_fold": band_counts(y, p, low, high)}


def clear_edge(y: np.ndarray, p: np.ndarray, normals_clear: float = BAND_NORMALS_CLEAR) -> float:
    """The highest score on the band's 1e-4 grid under which at most `normals_clear` of the normals lie."""
    normals = np.sort(p[y == 0])
    if not len(normals):
        return 1.0
    allowed = int(np.floor(normals_clear * len(normals)))  # normals that may score below the edge
    if allowed >= len(normals):
        return 1.0
    return float(np.floor(normals[allowed] * 1e4) / 1e4)  # at or under the first normal that must stay above


def band_counts(y: np.ndarray, p: np.ndarray, low: float, high: float) -> dict[str, int]:
    """Out-of-fold images inside the band [low, high), and each class on the wrong side of it."""
    inside = (p >= low) & (p < high)
    return {"images": int(len(y)), "inside": int(inside.sum()),
            "tumors_inside": int((inside & (y == 1)).sum()), "normals_inside": int((inside & (y == 0)).sum()),
            "tumors_below": int(((p < low) & (y == 1)).sum()), "normals_above": int(((p >= high) & (y == 0)).sum()),
            "normals_below": int(((p < low) & (y == 0)).sum())}


def type_display_rule(tumor_type: np.ndarray, type_probs: np.ndarray, names: list[str], p: np.ndarray,
                      suspected_from: float, precision: float = TYPE_PRECISION) -> dict[str, Any] | None:
    """The lowest P(type | tumor) of the most likely tumor type at which, among out-of-fold suspected tumors
    of known type, the shown types are right at least `precision` of the time (all those at or above it)."""
    conditional = type_probs / np.maximum(type_probs.sum(axis=1, keepdims=True), 1e-12)
    best = np.array(names)[conditional.argmax(axis=1)]
    confidence = conditional.max(axis=1)
    known = np.isin(tumor_type, names) & (p >= suspected_from)
    if not known.any():
        return None
    order = np.argsort(-confidence[known], kind="stable")
    right = (best[known] == tumor_type[known])[order]
    running = np.cumsum(right) / np.arange(1, len(right) + 1)
    ok = np.flatnonzero(running >= precision)
    if not len(ok):
        return None
    k = ok.max()  # the largest prefix that keeps the precision: the lowest probability that does
    return {"min_probability": float(confidence[known][order][k]), "target_precision": precision,
            "out_of_fold": {"suspected_with_known_type": int(known.sum()), "shown": int(k + 1),
                            "precision": float(running[k])}}


def threshold_and_band(y: np.ndarray, p: np.ndarray, specificity: float) -> tuple[float, dict[str, Any]]:
    """The lowest threshold keeping out-of-fold specificity >= `specificity`, and the uncertain band around it: the
    reading rules `threshold_from_cv` writes (also read by experiments that give them to other models)."""
    threshold = float(threshold_for_specificity(y, p, specificity))
    return threshold, uncertain_band(y, p, threshold)


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
    cv, rows, (fold, y, p) = own_cross_validation(meta, cv_dir)
    threshold, band = threshold_and_band(y, p, specificity)
    at_threshold = binary_metrics(y, p, threshold)
    point = {
        "target_specificity": specificity,
        "cross_validation": cross_validation_record(cv, y),
        "out_of_fold": {k: at_threshold[k] for k in ("threshold", "specificity", "sensitivity", "accuracy",
                                                     "confusion_matrix")},
        "out_of_fold_at_0.5": {k: v for k, v in binary_metrics(y, p, 0.5).items()
                               if k in ("specificity", "sensitivity", "confusion_matrix")},
        "nested_specificity": nested_specificity(fold, y, p, specificity),
        "previous_threshold": meta["threshold"], "previous_threshold_rule": meta.get("threshold_rule"),
    }
    rule = (f"lowest threshold with specificity >= {specificity:g} on the training normals out of fold, by grouped "
            f"{cv['folds']}-fold cross-validation of this recipe")
    update = {"threshold": threshold, "threshold_rule": rule, "operating_point": point,
              "uncertain_band": band}
    types = out_of_fold_types(rows)
    if types is not None:
        update["type_display"] = type_display_rule(*types, p, band["high"])
    return update_metadata(model_path, output, update)


def own_cross_validation(meta: dict, cv_dir: str | Path
                         ) -> tuple[dict, list[dict[str, str]], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The cross-validation in `cv_dir`, its out-of-fold rows and their `out_of_fold_scores`, refused unless it
    is of the model's own recipe on its own data and scored both classes."""
    if "ensemble" in meta:
        raise ModelFileError("an ensemble's members have different recipes: one cross-validation cannot speak "
                             "for it; set its threshold with `braintriage ensemble`")
    cv, rows = read_out_of_fold(cv_dir)
    training = meta.get("training", {})
    if training.get("data_fingerprint") != cv.get("data_fingerprint"):
        raise ModelFileError(f"{cv_dir} cross-validated other data (fingerprint "
                             f"{str(cv.get('data_fingerprint'))[:12]}..., the model's "
                             f"{str(training.get('data_fingerprint'))[:12]}...)")
    diffs = recipe_differences(training.get("config", {}), cv.get("config", {}))
    if diffs:
        raise ModelFileError(f"{cv_dir} cross-validated another recipe: " + "; ".join(diffs))
    scores = out_of_fold_scores(rows)
    if not (scores[1] == 0).any() or not (scores[1] == 1).any():
        raise ModelFileError(f"{cv_dir} scored no normals or no tumors out of fold: no threshold to read")
    return cv, rows, scores


def cross_validation_record(cv: dict, y: np.ndarray) -> dict[str, Any]:
    """What a model file records of the cross-validation a reading rule came from."""
    return {"folds": cv["folds"], "grouping": cv.get("grouping"), "hardware": cv.get("hardware"),
            "images": int(len(y)), "normals": int((y == 0).sum()), "data_fingerprint": cv["data_fingerprint"]}


LOWERED_RULE_START = "; its low edge lowered"


def band_low_from_cv(model_path: str | Path, cv_dir: str | Path, output: str | Path,
                     normals_clear: float = BAND_NORMALS_CLEAR) -> dict[str, Any]:
    """Write `output`: the model with its uncertain band's low edge lowered to where at most `normals_clear` of
    the out-of-fold normals of `cv_dir`, a cross-validation of its own recipe, lie below (never raised); its
    threshold and the band's high edge stay. For a model whose threshold came from a cross-validation whose
    scores were not kept (the bundled model's, session 15): the low edge is then read off another one."""
    meta = read_metadata(model_path)
    band = meta.get("uncertain_band")
    if not band:
        raise ModelFileError(f"{model_path} has no uncertain band to lower: set one with `braintriage threshold`")
    cv, _, (_, y, p) = own_cross_validation(meta, cv_dir)
    low = min(band["low"], clear_edge(y, p, normals_clear))
    first_rule = band["rule"].split(LOWERED_RULE_START)[0]  # lowered again: the sentence is replaced, not repeated
    lowered = {"low": low, "high": band["high"],
               "rule": (f"{first_rule}{LOWERED_RULE_START} to where at most {normals_clear:g} of the normals "
                        f"score below it, out of fold in a second cross-validation"),
               "out_of_fold": band_counts(y, p, low, band["high"]),
               "low_edge_from": {"previous_low": band["low"], "normals_clear": normals_clear,
                                 "cross_validation": cross_validation_record(cv, y)}}
    return update_metadata(model_path, output, {"uncertain_band": lowered})
