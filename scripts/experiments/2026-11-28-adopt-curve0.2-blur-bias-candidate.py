"""Session 10: does the CPU candidate of the recipe crop + curve 0.2 + blur + bias field
(2026-11-28-cpu-candidate-curve0.2-blur-bias.sh) replace the bundled model? Written, with its rule, while the
recipe's grouped CV was on its first fold: before the CV's result, before the candidate was trained, and
before any `Testing` score of it.

    python scripts/experiments/2026-11-28-adopt-curve0.2-blur-bias-candidate.py

The same rule as session 9's for crop + curve 0.5 (2026-11-28-adopt-crop-remap-candidate.py, which that
candidate failed on 1 and 3), applied to this recipe. The candidate replaces the bundled model if all hold:
  1. the laptop recipe's grouped CV with crop + curve 0.2 + blur + bias field
     (runs/cv-cpu-crop-remap0.2-blur-bias) against the plain one (runs/cv-cpu-oof), same folds: pooled
     specificity at 0.5 not lower AND pooled binary log loss of P(tumor) not higher;
  2. on the shared grouped validation split (seed 2, 410 images): the candidate's sensitivity at its own
     threshold >= 0.99 and specificity >= 0.95;
  3. on the same split, its tumor-type accuracy is at most 0.02 (8 images) below the bundled model's.
Other sources are the leave-source-out proxy's part (this recipe: 220 of 370 other-source tumors found at
specificity 0.95 against 173 plain, seeds 6 and 7), which the in-source numbers above cannot see.
`Testing` is scored once afterwards, whatever the outcome. It can only veto, never choose: a replacement below
the floors the shipped model's tests hold it to (issue 5: `Testing` accuracy >= 0.88 and sensitivity >= 0.85,
tests/test_predict.py; issue 7's guard, tests/test_ood.py: the ten listed non-MRI inputs flagged and false
alarms on `Testing` < 0.07) would not ship.
"""

from __future__ import annotations

import json

from adoption import ROOT, decide  # beside this script; decide spells out rules 1-3 above

CAND_CV = ROOT / "runs/cv-cpu-crop-remap0.2-blur-bias/cv.json"
CANDIDATE = ROOT / "runs/cpu-candidate-curve0.2-blur-bias/model.onnx"

if __name__ == "__main__":
    print(json.dumps(decide(CAND_CV, CANDIDATE), indent=2))
