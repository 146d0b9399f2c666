#!/usr/bin/env bash
# Session 10 (2026-11-28, CPU only): what does the whole candidate recipe (head crop + intensity curve on 20%
# of the images + blur sigma <= 1 px + bias field 0.3) cost on Training's own sources? Grouped 5-fold
# cross-validation of the laptop recipe, the same folds and seed (2) as runs/cv-cpu-oof (plain),
# runs/cv-cpu-crop (crop alone) and runs/cv-cpu-crop-remap (crop + curve 0.5, which failed this rule).
# Why this one before crop + curve 0.2 alone (2026-11-28-cv-crop-remap0.2.sh, not run): it is the recipe the
# leave-source-out proxy adopted last (2026-11-28-leave-source-out-curve0.2-blur-bias.sh: 220 of 370
# other-source tumors at specificity 0.95, ROC-AUC 0.871), and only one 65-minute CV fits beside a candidate.
#
# Rule, fixed before the run, the same as for curve 0.5: the recipe passes if, against the plain baseline
# (runs/cv-cpu-oof), pooled out-of-fold specificity at 0.5 is not lower (>= 361/395) AND the pooled binary log
# loss of P(tumor) is not higher (<= 0.0658). Read with
# `python scripts/experiments/compare_cv.py runs/cv-cpu-oof/cv.json runs/cv-cpu-crop-remap0.2-blur-bias/cv.json`.
# If it passes, it is the recipe of the next bundled-model candidate. Testing is not looked at.
# About 70 minutes on the 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
test -f .devdata/training-200-head.npz || braintriage cache ../shared/data/brain-tumor-classification-mri \
  --split training --crop-to-head -o .devdata/training-200-head.npz
braintriage train .devdata/training-200-head.npz --crop-to-head --intensity-remap 0.2 --blur 1 --bias-field 0.3 \
  --folds 5 --epochs 80 --start-size 96 --batch-size 64 --zoom 0.75 1.3 --rotation 15 --translate 0.1 \
  --gamma 0.6 1.6 --noise 0.03 --patience 80 --seed 2 --run-dir runs/cv-cpu-crop-remap0.2-blur-bias
