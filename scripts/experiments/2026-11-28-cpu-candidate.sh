#!/usr/bin/env bash
# Third session (no GPU lent): one issue-7 candidate trained on the 2-core CPU (bf16 on AMX), ~40 minutes.
# Candidate: the bundled recipe (seed 2, so the same grouped validation split as the bundled model) plus
# blur (sigma up to 1 px) and a bias field (log-amplitude up to 0.3) against scanner/site shift, with
# progressive resizing 128 -> 200 px, batch 64 (faster per image on this CPU than 128), and patience 60
# (validation runs at 200 px while the first half trains at 128, so its loss can stall longer).
# Rule, fixed before the run: it replaces the bundled model only if its best validation loss is lower than
# the bundled model's (0.0890); Testing is scored once afterwards, for the record.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/cpu-candidate}
braintriage train .devdata/training-200.npz \
  --arch resnet18-w32 --labels type --image-size 200 --start-size 128 \
  --epochs 150 --batch-size 64 --lr 2e-3 --weight-decay 0.05 --patience 60 --val-fraction 0.15 \
  --zoom 0.75 1.3 --rotation 15 --translate 0.1 --gamma 0.6 1.6 --noise 0.03 --brightness 0.6 1.5 \
  --blur 1.0 --bias-field 0.3 --target-sensitivity 0.95 --seed 2 \
  --output "$OUT/model.safetensors" --run-dir "$OUT"
