"""Session 9: does the session-8 CPU candidate (bundled recipe + head crop + intensity curve) replace the
bundled model? Written, with its rule, before the candidate was scored on `Testing` and before the
cross-validation it reads (2026-11-28-cv-crop-remap.sh) had finished.

    python scripts/experiments/2026-11-28-adopt-crop-remap-candidate.py

Why a second rule: session 8 held this candidate to (a) the bundled recipe's median in-source four-class
validation loss (0.123; it has 0.1507) and (b) validation specificity >= 0.95 (it has 0.982). Session 6's
cross-validation had already shown that the head crop raises the four-class loss while improving every number
of the tumor verdict, and sessions 6-8's leave-source-out proxy showed that in-source validation cannot see
the other-source tumors the change is for. So (a) measured the wrong thing for this change; this rule measures
the tumor verdict on Training's own sources (grouped CV), keeps the tumor type from being traded away, and
relies on the proxy (crop + curve: ROC-AUC higher on 6 of 6 seeds) for other sources. It is a second try at
adopting the same model, and docs/model.md says so.

The candidate replaces the bundled model if all hold:
  1. the laptop recipe's grouped CV with crop + curve (runs/cv-cpu-crop-remap) against the plain one
     (runs/cv-cpu-oof), same folds: pooled specificity at 0.5 not lower AND pooled binary log loss of
     P(tumor) not higher (session 7's rule for the curve);
  2. on the shared grouped validation split (seed 2, 410 images): the candidate's sensitivity at its own
     threshold >= 0.99 and specificity >= 0.95;
  3. on the same split, its tumor-type accuracy is at most 0.02 (8 images) below the bundled model's.
`Testing` is scored once afterwards, whatever the outcome. It can only veto, never choose: a replacement that
fell below the floor the bundled model's acceptance test holds it to (issue 5: `Testing` accuracy >= 0.88 and
sensitivity >= 0.85, tests/test_predict.py) would not ship, and the bundled model would stay.
"""

from __future__ import annotations

import json

from adoption import HEAD_CACHE, PLAIN_CV, ROOT, bundled_and_candidate, pooled  # beside this script

BASE_CV, CAND_CV = PLAIN_CV, ROOT / "runs/cv-cpu-crop-remap/cv.json"
CANDIDATE = ROOT / "runs/cpu-crop-remap-candidate/model.onnx"


def main() -> None:
    (base_normals, base_loss), (cand_normals, cand_loss) = pooled(BASE_CV), pooled(CAND_CV)
    rule1 = cand_normals[0] >= base_normals[0] and cand_loss <= base_loss
    bundled, candidate = bundled_and_candidate(CANDIDATE, HEAD_CACHE)
    rule2 = candidate["sensitivity"] >= 0.99 and candidate["specificity"] >= 0.95
    rule3 = candidate["type_accuracy"] >= bundled["type_accuracy"] - 0.02
    print(json.dumps({
        "1_cv_crop_remap_vs_plain": {"normals right / called tumor at 0.5": [base_normals, cand_normals],
                                     "binary log loss": [round(base_loss, 4), round(cand_loss, 4)], "holds": rule1},
        "2_candidate_validation": {**candidate, "holds": rule2},
        "3_type_accuracy": {"bundled": bundled["type_accuracy"], "candidate": candidate["type_accuracy"],
                            "holds": rule3},
        "bundled_validation": bundled,
        "replace_bundled_model": rule1 and rule2 and rule3}, indent=2))


if __name__ == "__main__":
    main()
