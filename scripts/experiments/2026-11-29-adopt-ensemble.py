"""Session 12: does the ensemble of the bundled model and a crop + curve 0.2 member replace the bundled model?
Written, with its rule, while the member trained (2026-11-29-ensemble.sh, step 1) and before the proxy runs
(step 2): before any result of either, and before any `Testing` score of the ensemble.

    python scripts/experiments/2026-11-29-adopt-ensemble.py

The ensemble: the mean of the two members' four-class probabilities, each member reading the scan with its own
preprocessing (the bundled model the whole frame, the member the head crop). Its threshold is set by the
bundled model's rule (the highest threshold with validation sensitivity >= 0.95, capped at 0.5).

Rule: the ensemble replaces the bundled model if all hold.
  Other source (the leave-source-out proxy, fresh seed 8, laptop recipe, last epoch; the ensemble of the plain
  and the crop + curve 0.2 runs against the plain run alone):
    P1. higher ROC-AUC on the held-out images;
    P2. more of the 185 other-source tumors found at its own specificity-0.95 threshold (the lowest that keeps
        at least 81 of the 85 held-out normals right).
  Own sources (the 410 images of the bundled model's grouped validation split, which the member, trained with
  the same seed, also held out):
    V1. four-class log loss lower than the bundled model's;
    V2. no more binary errors at the ensemble's threshold than the bundled model at its own;
    V3. tumor-type accuracy at most 0.02 below the bundled model's.
`Testing` is scored once afterwards and can only veto, as in sessions 9-11: below the floors the shipped
model's tests hold it to (`Testing` accuracy >= 0.88, sensitivity >= 0.85; the OOD tests) it would not ship.
The shipped file must also stay <= 10 MB and a cold single-image predict faster than importing PyTorch.
"""

from __future__ import annotations

import json

import numpy as np
from sklearn.metrics import roc_auc_score

from adoption import BUNDLED, BUNDLED_CACHE, HEAD_CACHE, ROOT  # beside this script
from braintriage.cache import DecodedSet
from braintriage.inference import Predictor
from braintriage.metrics import threshold_for_sensitivity
from braintriage.modelfile import read_metadata
from braintriage.splits import model_validation_split

MEMBER = ROOT / "runs/ens-member-crop-curve0.2/model.onnx"
PROXY = ROOT / "runs/leave-source-out-ensemble/leave_source_out.json"
PROXY_PLAIN, PROXY_MEMBER = "training-200-seed8", "training-200-head-remap0.2-seed8"


def found_at_specificity(y: np.ndarray, p: np.ndarray, specificity: float = 0.95) -> int:
    """The proxy script's operating point: tumors with p above the lowest threshold keeping `specificity` of the
    normals right."""
    normals = np.sort(p[y == 0])
    return int((p[y == 1] > normals[int(np.ceil(specificity * len(normals))) - 1]).sum())


def proxy() -> dict:
    runs = json.loads(PROXY.read_text())
    plain, member = runs[PROXY_PLAIN], runs[PROXY_MEMBER]
    y = np.array(plain["held_out_is_tumor"])
    assert y.tolist() == member["held_out_is_tumor"]
    p_plain = np.array(plain["held_out_p_tumor_at_last_epoch"])
    p_ens = (p_plain + np.array(member["held_out_p_tumor_at_last_epoch"])) / 2
    out = {name: {"roc_auc": round(float(roc_auc_score(y, p)), 4), "tumors_found_at_spec_0.95": found_at_specificity(y, p)}
           for name, p in (("plain", p_plain), ("member", np.array(member["held_out_p_tumor_at_last_epoch"])),
                           ("ensemble", p_ens))}
    out["P1"] = out["ensemble"]["roc_auc"] > out["plain"]["roc_auc"]
    out["P2"] = out["ensemble"]["tumors_found_at_spec_0.95"] > out["plain"]["tumors_found_at_spec_0.95"]
    return out


def scores(y: np.ndarray, types: np.ndarray, target: np.ndarray, threshold: float) -> dict:
    p = 1 - types[:, 0]
    return {"threshold": round(threshold, 4),
            "log_loss": round(float(-np.mean(np.log(np.clip(types[np.arange(len(y)), target], 1e-7, 1)))), 4),
            "errors": int(((p >= threshold) != (y == 1)).sum()),
            "type_accuracy": round(float((types.argmax(1) == target).mean()), 4)}


def validation() -> dict:
    plain, head = DecodedSet.load(BUNDLED_CACHE), DecodedSet.load(HEAD_CACHE)
    val_idx = model_validation_split(read_metadata(BUNDLED), plain)
    if not np.array_equal(val_idx, model_validation_split(read_metadata(MEMBER), head)):
        raise SystemExit("the member was not validated on the bundled model's split: not comparable")
    y, target = plain.tumor[val_idx], plain.tumor_type[val_idx]
    bundled = Predictor(BUNDLED)
    _, types_a, _ = bundled.predict_arrays(plain.images[val_idx])
    _, types_b, _ = Predictor(MEMBER).predict_arrays(head.images[val_idx])
    types_e = (types_a + types_b) / 2
    out = {"images": len(val_idx),
           "bundled": scores(y, types_a, target, bundled.threshold),
           "member": scores(y, types_b, target, read_metadata(MEMBER)["threshold"]),
           "ensemble": scores(y, types_e, target, threshold_for_sensitivity(y, 1 - types_e[:, 0], 0.95))}
    out["V1"] = out["ensemble"]["log_loss"] < out["bundled"]["log_loss"]
    out["V2"] = out["ensemble"]["errors"] <= out["bundled"]["errors"]
    out["V3"] = out["ensemble"]["type_accuracy"] >= out["bundled"]["type_accuracy"] - 0.02
    return out


if __name__ == "__main__":
    result = {"proxy": proxy(), "validation": validation()}
    result["replace_bundled_model"] = all(result["proxy"][k] for k in ("P1", "P2")) and \
        all(result["validation"][k] for k in ("V1", "V2", "V3"))
    print(json.dumps(result, indent=2))
