#!/usr/bin/env bash
# Session 11 (no GPU lent). Run only if the grouped CV of crop + curve 0.2 passes its rule
# (2026-11-28-cv-crop-remap0.2.sh); written, with its adoption rule (2026-11-28-adopt-curve0.2-candidate.py),
# while that CV was on its first fold. Candidate: the bundled recipe (seed 2, so the bundled model's grouped
# validation split) plus --crop-to-head and --intensity-remap 0.2, on the 2-core CPU in bf16, made to fit one
# session as session 8's candidate was: progressive resizing 128 -> 200 px, batch 64, patience 60 (about 45
# minutes).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/cpu-candidate-curve0.2}
braintriage train .devdata/training-200-head.npz --crop-to-head --intensity-remap 0.2 \
  --arch resnet18-w32 --labels type --image-size 200 --start-size 128 \
  --epochs 150 --batch-size 64 --lr 2e-3 --weight-decay 0.05 --patience 60 --val-fraction 0.15 \
  --zoom 0.75 1.3 --rotation 15 --translate 0.1 --gamma 0.6 1.6 --noise 0.03 --brightness 0.6 1.5 \
  --target-sensitivity 0.95 --seed 2 \
  --output "$OUT/model.safetensors" --run-dir "$OUT"
braintriage export --model "$OUT/model.safetensors" --output "$OUT/model.onnx"
