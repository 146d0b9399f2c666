"""The two measurements the bundled-model adoption rules read (scripts/experiments/2026-11-28-adopt-*.py):
the pooled out-of-fold tumor verdict of a grouped cross-validation, and a model's numbers on its own grouped
validation split. Each adoption script keeps its own rule; this file only measures."""

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
from braintriage.train import model_validation_split  # noqa: E402
from compare_cv import binary_log_loss  # noqa: E402  (beside this file)

BUNDLED = ROOT / "src/braintriage/assets/default-model.onnx"
BUNDLED_CACHE = ROOT / ".devdata/training-200.npz"
HEAD_CACHE = ROOT / ".devdata/training-200-head.npz"  # the same images cropped to the head (--crop-to-head)
PLAIN_CV = ROOT / "runs/cv-cpu-oof/cv.json"  # the laptop recipe's grouped CV, the baseline of every CV rule


def pooled(cv_json: Path) -> tuple[list[int], float]:
    """[normals right, normals called tumor] at 0.5 (stored in cv.json), and the binary log loss of the
    out-of-fold P(tumor) (compare_cv.py's)."""
    at_half = json.loads(cv_json.read_text())["pooled_out_of_fold"]["at_0.5"]
    return at_half["confusion_matrix"][0], binary_log_loss(str(cv_json))


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
