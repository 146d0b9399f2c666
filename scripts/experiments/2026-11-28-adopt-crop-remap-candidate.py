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

from adoption import ROOT, decide  # beside this script; decide spells out rules 1-3 above

CAND_CV = ROOT / "runs/cv-cpu-crop-remap/cv.json"
CANDIDATE = ROOT / "runs/cpu-crop-remap-candidate/model.onnx"

if __name__ == "__main__":
    print(json.dumps(decide(CAND_CV, CANDIDATE), indent=2))
