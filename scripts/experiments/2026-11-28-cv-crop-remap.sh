#!/usr/bin/env bash
# Session 9 (2026-11-28, CPU only): what do the head crop + random intensity curve (adopted into the
# candidate recipes by the leave-source-out proxy in session 8, at specificity 0.95) cost on Training's own
# sources? Grouped 5-fold cross-validation of the laptop recipe, the same folds and seed (2) as the plain
# baseline in runs/cv-cpu-oof and the crop-only run in runs/cv-cpu-crop (docs/model.md, sessions 4-6).
#
# Rule, fixed before the run: session 7's rule for the curve (written for the bundled recipe in
# gpu-issue7-cv.sh), applied to the laptop recipe: crop + curve passes if, against the plain baseline
# (runs/cv-cpu-oof), the pooled out-of-fold specificity at 0.5 is not lower (>= 361/395) AND the pooled
# binary log loss of P(tumor) is not higher (<= 0.0658). Read with
# `python scripts/experiments/compare_cv.py runs/cv-cpu-oof/cv.json runs/cv-cpu-crop-remap/cv.json`.
# If it passes, crop + curve is better on other sources (proxy) and not worse on Training's own (this), and
# becomes the recipe for the next bundled model. Testing is not looked at for this choice.
set -euo pipefail
cd "$(dirname "$0")/../.."
test -f .devdata/training-200-head.npz || braintriage cache ../shared/data/brain-tumor-classification-mri \
  --split training --crop-to-head -o .devdata/training-200-head.npz
braintriage train .devdata/training-200-head.npz --crop-to-head --intensity-remap 0.5 --folds 5 --epochs 80 \
  --start-size 96 --batch-size 64 --zoom 0.75 1.3 --rotation 15 --translate 0.1 --gamma 0.6 1.6 --noise 0.03 \
  --patience 80 --seed 2 --run-dir runs/cv-cpu-crop-remap
