#!/usr/bin/env bash
# Prepared in session 6 (no GPU lent), to run only if a cross-validation adopts the head crop (session 6's on
# the laptop recipe, 2026-11-28-cv-crop.sh, did not; so this has not been run):
# the bundled recipe unchanged (scripts/train_bundled_model.sh: batch 128, 200 px throughout, 150 epochs,
# patience 40, seed 2, so the bundled model's grouped validation split) plus --crop-to-head, on the 2-core
# CPU in bf16 (about an hour).
# Rule, fixed before the run (session 3's): it replaces the bundled model only if its best validation loss is
# lower than the bundled model's (0.0890). Testing is scored once afterwards, for the record.
set -euo pipefail
cd "$(dirname "$0")/../.."
export RUN_DIR=${RUN_DIR:-runs/cpu-crop-candidate} EXPORT_TO=${EXPORT_TO:-runs/cpu-crop-candidate/model.onnx}
scripts/train_bundled_model.sh .devdata/training-200-head.npz --crop-to-head
