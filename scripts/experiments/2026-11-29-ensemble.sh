#!/usr/bin/env bash
# Session 12 (no GPU lent): an ensemble of the bundled model and a crop + curve 0.2 member.
#
# Why: crop + curve ranks other-source tumors better than plain on all six leave-source-out seeds run (sessions
# 7-9) but costs a little on `Training`'s own sources (its grouped CV failed against plain in sessions 9-11).
# An ensemble might keep both: exploratory, seen before this rule was written, the two session-11 grouped CVs
# (plain and crop + curve 0.2, same folds, on the EPYC) averaged image by image beat each alone on
# `Training`'s own sources: normals right at 0.5 374 of 395 (plain 372, crop + curve 365), tumors missed 30
# (38, 39), binary log loss 0.0558 (0.0607, 0.0674), type accuracy 0.922 (0.913, 0.899). Any two averaged
# models may do that; what the rule below adds is the other source.
#
# Steps (the rule, in 2026-11-29-adopt-ensemble.py, was written while step 1 trained, before any step's result):
#  1. the member: session 11's CPU candidate recipe, unchanged (seed 2, so the bundled model's validation split):
#       OUT=runs/ens-member-crop-curve0.2 bash scripts/experiments/2026-11-28-cpu-candidate-curve0.2.sh
#  2. the leave-source-out proxy on a fresh seed (8), plain and crop + curve 0.2, the laptop recipe, about 16
#     minutes each; the ensemble's held-out P(tumor) is the mean of the two runs' (the same held-out images,
#     in the same order: the split's own seed is fixed):
#       bash scripts/experiments/2026-11-29-ensemble.sh
#  3. python scripts/experiments/2026-11-29-adopt-ensemble.py
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${ROOT:-../shared/data/brain-tumor-classification-mri/Training}
OUT=${OUT:-runs/leave-source-out-ensemble}
python scripts/experiments/2026-11-28-leave-source-out.py "$ROOT" "$OUT" .devdata/training-200.npz --seeds 8
python scripts/experiments/2026-11-28-leave-source-out.py "$ROOT" "$OUT" .devdata/training-200-head.npz \
  --remap 0.2 --seeds 8
