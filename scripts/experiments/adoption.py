"""The two measurements the bundled-model adoption rules read (scripts/experiments/2026-11-28-adopt-*.py):
the pooled out-of-fold tumor verdict of a grouped cross-validation, and a model's numbers on its own grouped
validation split; and `decide`, the rule sessions 9-11 adopted a candidate by (each dated adoption script
says why that rule and which cross-validation and candidate it reads)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from braintriage.cache import DecodedSet  # noqa: E402
from braintriage.inference import Predictor  # noqa: E402
from braintriage.metrics import binary_metrics  # noqa: E402
from braintriage.modelfile import read_metadata  # noqa: E402
from braintriage.splits import model_validation_split  # noqa: E402
from compare_cv import binary_log_loss  # noqa: E402  (beside this file)

BUNDLED = ROOT / "src/braintriage/assets/default-model.onnx"
BUNDLED_CACHE = ROOT / ".devdata/training-200.npz"
HEAD_CACHE = ROOT / ".devdata/training-200-head.npz"  # the same images cropped to the head (--crop-to-head)
PLAIN_CV = ROOT / "runs/cv-cpu-oof/cv.json"  # the laptop recipe's grouped CV, the baseline of every CV rule
# Its pooled numbers as docs/model.md records them (sessions 4 and 6): [normals right, normals called tumor] at
# 0.5 and the binary log loss of P(tumor). Used when the run folder is not on this machine (a fresh checkout in
# session 11 had lost runs/); the rules were written against these numbers.
PLAIN_CV_RECORDED = ([361, 34], 0.0658)


def pooled(cv_json: Path) -> tuple[list[int], float]:
    """[normals right, normals called tumor] at 0.5 (stored in cv.json), and the binary log loss of the
    out-of-fold P(tumor) (compare_cv.py's)."""
    at_half = json.loads(cv_json.read_text())["pooled_out_of_fold"]["at_0.5"]
    return at_half["confusion_matrix"][0], binary_log_loss(str(cv_json))


def plain_pooled() -> tuple[list[int], float]:
    """`pooled` of the plain cross-validation, from its run folder if present, else as recorded."""
    return pooled(PLAIN_CV) if PLAIN_CV.exists() else PLAIN_CV_RECORDED


def validation(model: Path, cache: Path) -> dict:
    """Sensitivity and specificity at the model's own threshold and tumor-type accuracy on the grouped
    validation split rebuilt from its metadata (`cache` must be the data it was trained on, preprocessed the
    same way); `validation_ids` lets two models be checked to share the split."""
    meta = read_metadata(model)
    decoded = DecodedSet.load(cache)
    val_idx = model_validation_split(meta, decoded)
    predictor = Predictor(model)
    p, types, _ = predictor.predict_arrays(decoded.images[val_idx])
    m = binary_metrics(decoded.tumor[val_idx], p, predictor.threshold)
    return {"split_seed": meta["training"]["config"]["seed"], "images": len(val_idx), "threshold": predictor.threshold,
            "sensitivity": float(m["sensitivity"]), "specificity": float(m["specificity"]),
            "type_accuracy": float((types.argmax(1) == decoded.tumor_type[val_idx]).mean()),
            "validation_ids": val_idx.tolist()}


def bundled_and_candidate(candidate: Path, candidate_cache: Path) -> tuple[dict, dict]:
    """`validation` of the bundled model and of a candidate, refusing the pair unless both were validated on
    the same images (a candidate trained with the bundled recipe's seed shares its split)."""
    bundled, cand = validation(BUNDLED, BUNDLED_CACHE), validation(candidate, candidate_cache)
    if bundled.pop("validation_ids") != cand.pop("validation_ids"):
        raise SystemExit("the two models were not validated on the same split: not comparable")
    return bundled, cand


def cv_record(name: str) -> Path:
    """A cross-validation's cv.json: the run folder's if on this machine, else the committed record
    (docs/cv-runs/NAME.json, record_cv.py)."""
    run = ROOT / "runs" / name / "cv.json"
    return run if run.exists() else ROOT / "docs/cv-runs" / f"{name}.json"


def decide(cand_cv: Path, candidate: Path, other_plain_cv: Path | None = None) -> dict:
    """The rule: the candidate (trained with the bundled recipe's seed, so on its validation split) replaces the
    bundled model if all hold:
      1. its recipe's laptop grouped CV (`cand_cv`) against the plain one, same folds: pooled specificity at 0.5
         not lower AND pooled binary log loss of P(tumor) not higher (against `other_plain_cv` as well, a plain
         run on the candidate CV's processor, when given);
      2. on the shared grouped validation split (seed 2, 410 images): the candidate's sensitivity at its own
         threshold >= 0.99 and specificity >= 0.95;
      3. on the same split, its tumor-type accuracy is at most 0.02 (8 images) below the bundled model's.
    A candidate is only trained when 1 holds; without it, 2 and 3 count as failed."""
    cand_normals, cand_loss = pooled(cand_cv)
    plains = {"plain (session 4)": plain_pooled()}
    if other_plain_cv is not None:
        plains[other_plain_cv.stem if other_plain_cv.stem != "cv" else other_plain_cv.parent.name] = \
            pooled(other_plain_cv)
    result, rule1 = {}, True
    for name, (base_normals, base_loss) in plains.items():
        holds = cand_normals[0] >= base_normals[0] and cand_loss <= base_loss
        rule1 &= holds
        result[f"1_cv_vs_{name}"] = {"normals right / called tumor at 0.5": [base_normals, cand_normals],
                                    "binary log loss": [round(base_loss, 4), round(cand_loss, 4)], "holds": holds}
    if candidate.exists():
        bundled, cand = bundled_and_candidate(candidate, HEAD_CACHE)
        rule2 = cand["sensitivity"] >= 0.99 and cand["specificity"] >= 0.95
        rule3 = cand["type_accuracy"] >= bundled["type_accuracy"] - 0.02
        result |= {"2_candidate_validation": {**cand, "holds": rule2},
                   "3_type_accuracy": {"bundled": bundled["type_accuracy"], "candidate": cand["type_accuracy"],
                                       "holds": rule3},
                   "bundled_validation": bundled}
    else:
        rule2 = rule3 = False
        result["candidate"] = f"{candidate.relative_to(ROOT)} not trained"
    result["replace_bundled_model"] = rule1 and rule2 and rule3
    return result
