#!/usr/bin/env bash
# Session 9, last runs: blur + bias field on top of crop + the milder curve (0.2), leave-source-out proxy.
# Both were adopted on the proxy this session on top of other recipes (blur + bias field on crop + curve 0.5:
# 208 against 196 of 370; curve 0.2: 206 against 173 plain); this asks whether they add up.
# Rule, fixed before the runs: blur + bias field join the crop + curve 0.2 recipe if, over seeds 6 and 7,
# against the crop + curve 0.2 runs in runs/leave-source-out-spec95 (206 of 370 found at specificity 0.95,
# mean ROC-AUC 0.860), the mean held-out ROC-AUC is higher AND more tumors are found at specificity 0.95.
# About 15 minutes per run on the 2-core CPU; two runs.
set -euo pipefail
ROOT=${ROOT:-../shared/data/brain-tumor-classification-mri/Training}
HEAD=${HEAD:-.devdata/training-200-head.npz}
OUT=${OUT:-runs/leave-source-out-spec95}
for seed in 6 7; do
  python scripts/experiments/2026-11-28-leave-source-out.py "$ROOT" "$OUT" "$HEAD" --remap 0.2 --blur 1 \
    --bias-field 0.3 --seeds "$seed"
done
