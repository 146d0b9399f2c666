"""Does test-time augmentation help a model? Decided on its own validation split, never on `Testing`.

    python scripts/experiments/validate_tta.py MODEL TRAINING_CACHE.npz [--write OUTPUT_MODEL]

Rebuilds the model's grouped validation split from its metadata (seed, validation fraction, data
fingerprint), scores it with and without horizontal-flip TTA, and prints both. The rule, fixed before
looking: adopt TTA when the validation 4-class log loss is lower and the tumor ROC-AUC is not lower. With
--write, a copy of the model with `test_time_augmentation` set by that rule is written (weights untouched).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from braintriage.cache import DecodedSet  # noqa: E402
from braintriage.inference import Predictor  # noqa: E402
from braintriage.metrics import binary_metrics, type_log_loss  # noqa: E402
from braintriage.modelfile import read_metadata, update_metadata  # noqa: E402
from braintriage.splits import model_validation_split  # noqa: E402


def scores(predictor: Predictor, decoded: DecodedSet, idx: np.ndarray) -> dict:
    p, types, _ = predictor.predict_arrays(decoded.images[idx])
    m = binary_metrics(decoded.tumor[idx], p, predictor.threshold)
    target = decoded.tumor_type[idx]
    log_loss = type_log_loss(types, target)
    return {"log_loss": round(log_loss, 4), "type_accuracy": round(float((types.argmax(1) == target).mean()), 4),
            **{k: round(float(m[k]), 4) for k in ("roc_auc", "accuracy", "sensitivity", "specificity")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("training_cache")
    ap.add_argument("--write", type=Path)
    args = ap.parse_args()
    meta = read_metadata(args.model)
    decoded = DecodedSet.load(args.training_cache)
    val_idx = model_validation_split(meta, decoded)
    results = {}
    for tta in ([], ["horizontal_flip"]):
        plain = Predictor(args.model)
        plain.network.test_time_augmentation = tta
        results["+".join(tta) or "none"] = scores(plain, decoded, val_idx)
    flip, none = results["horizontal_flip"], results["none"]
    adopt = flip["log_loss"] < none["log_loss"] and flip["roc_auc"] >= none["roc_auc"]
    print(json.dumps({"validation_images": len(val_idx), "results": results, "adopt_flip_tta": adopt}, indent=2))
    if args.write:
        update_metadata(args.model, args.write, {"test_time_augmentation": ["horizontal_flip"] if adopt else []})


if __name__ == "__main__":
    main()
