"""Session 11: does the CPU candidate of the recipe crop + curve 0.2 (2026-11-28-cpu-candidate-curve0.2.sh)
replace the bundled model? Written, with its rule, while the recipe's grouped CV (2026-11-28-cv-crop-remap0.2.sh,
restarted from nothing in session 11: a fresh checkout had lost runs/) was on its first fold: before the CV's
result, before the candidate was trained, and before any `Testing` score of it.

    python scripts/experiments/2026-11-28-adopt-curve0.2-candidate.py

The same rule as sessions 9 and 10 (`adoption.decide`): the CV not worse than plain at 0.5 in specificity and
binary log loss (against both plain runs, session 4's on a Xeon and session 11's on this session's EPYC, as
2026-11-28-cv-plain-rerun.sh says); validation sensitivity >= 0.99 and specificity >= 0.95; tumor-type
accuracy at most 0.02 below the bundled model's. Other sources are the leave-source-out proxy's part (crop +
curve 0.2: 206 of 370 other-source tumors found at specificity 0.95 against 173 plain), which the in-source
numbers cannot see.
`Testing` is scored once afterwards, whatever the outcome, and can only veto: a replacement below the floors
the shipped model's tests hold it to (tests/test_predict.py: `Testing` accuracy >= 0.88 and sensitivity >= 0.85;
tests/test_ood.py: the listed non-MRI inputs flagged and false alarms on `Testing` < 0.07) would not ship.
"""

from __future__ import annotations

import json

from adoption import ROOT, cv_record, decide  # beside this script; decide spells out the rule

CANDIDATE = ROOT / "runs/cpu-candidate-curve0.2/model.onnx"

if __name__ == "__main__":
    print(json.dumps(decide(cv_record("cv-cpu-crop-remap0.2"), CANDIDATE, cv_record("cv-cpu-plain-epyc")), indent=2))
