#!/usr/bin/env bash
# Does a random intensity curve (augmentation that may reorder tissue contrasts, `--intensity-remap 0.5`)
# help a model find tumors from a source it never saw tumors from? Measured on the leave-source-out proxy
# inside Training (scripts/experiments/2026-11-28-leave-source-out.py: train on the 512x512 tumors and 80% of
# the normals, score the 185 other-source tumors and 85 normals), laptop recipe, 80 epochs, two seeds.
# The plain seed-2 run is session 6's (runs/leave-source-out, same code path: the new option draws no random
# numbers when it is off, so it reproduces).
#
# Rule, fixed before any run: the intensity curve enters the next candidate recipes if, for EACH of seeds 2 and
# 3, the remap run finds more of the 185 held-out tumors at threshold 0.5 at the last epoch (the epoch is not
# chosen on the held-out images) than the plain run of the same seed, and calls at most 2 fewer of the 85
# held-out normals right. Anything else: not adopted. (Specificity proper is for grouped cross-validation;
# 85 normals only guard against a model that buys sensitivity by calling everything a tumor.)
#
# About 18 minutes per run on the 2-core CPU; three runs.
set -euo pipefail
ROOT=${ROOT:-../shared/data/brain-tumor-classification-mri/Training}
CACHE=${CACHE:-.devdata/training-200.npz}
OUT=${OUT:-runs/leave-source-out-remap}
python scripts/experiments/2026-11-28-leave-source-out.py "$ROOT" "$OUT" "$CACHE" --remap 0.5 --seeds 2
python scripts/experiments/2026-11-28-leave-source-out.py "$ROOT" "$OUT" "$CACHE" --seeds 3
python scripts/experiments/2026-11-28-leave-source-out.py "$ROOT" "$OUT" "$CACHE" --remap 0.5 --seeds 3
