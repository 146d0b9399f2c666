#!/usr/bin/env bash
# Does histogram equalisation of each image's foreground (`--equalize`, a preprocessing setting the model file
# records, so prediction equalises too) help a model find tumors from a source it never saw tumors from?
# The leave-source-out proxy (scripts/experiments/2026-11-28-leave-source-out.py), laptop recipe, 80 epochs,
# seeds 2 and 3, on a cache made with `braintriage cache ... --equalize` (same images, same near-duplicate
# groups, so the same split). The plain runs of both seeds are in runs/leave-source-out-remap (session 7).
#
# Rule, fixed before any run (the same form as the intensity curve's): adopt --equalize for the next candidate
# recipes if, for EACH of seeds 2 and 3, the equalised run finds more of the 185 held-out tumors at threshold
# 0.5 at the last epoch than the plain run of the same seed (84 and 97), and calls at most 2 fewer of the 85
# held-out normals right (plain: 79 and 79). Anything else: not adopted.
#
# About 20 minutes per run on the 2-core CPU; two runs.
set -euo pipefail
ROOT=${ROOT:-../shared/data/brain-tumor-classification-mri/Training}
CACHE=${CACHE:-.devdata/training-200-eq.npz}
OUT=${OUT:-runs/leave-source-out-remap}
[ -f "$CACHE" ] || braintriage cache "$ROOT" -o "$CACHE" --equalize
python scripts/experiments/2026-11-28-leave-source-out.py "$ROOT" "$OUT" "$CACHE" --seeds 2 3
