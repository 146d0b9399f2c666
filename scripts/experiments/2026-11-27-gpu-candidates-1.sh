#!/usr/bin/env bash
# Train the bundled-model candidate and its comparisons on a GPU machine from carried decoded caches
# (.devdata/training-200.npz, .devdata/testing-200.npz made by `braintriage cache`), then score each on
# Testing for the record. The bundled model is chosen before Testing is looked at: run w32-type-s0.
# QUICK=1 makes a seconds-long dry run on a CPU.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT/runs"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi -L 2>/dev/null; python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__)"
extra=(); [ "${QUICK:-0}" = 1 ] && extra=(--limit 200 --max-steps 3 --device cpu)
run() {  # name, seconds allowed, train options...
  local name=$1 secs=$2; shift 2
  echo "== $name"
  timeout "$secs" python3 -m braintriage train .devdata/training-200.npz -o "$OUT/runs/$name.safetensors" \
    --run-dir "$OUT/runs/$name" "$@" "${extra[@]}" > "$OUT/runs/$name.log" 2>&1
  echo "rc=$?"; grep -E "parameters|saved|stopping|Error|error" "$OUT/runs/$name.log" | tail -5
  [ -f "$OUT/runs/$name.safetensors" ] && python3 -m braintriage evaluate .devdata/testing-200.npz \
    -m "$OUT/runs/$name.safetensors" --output-dir "$OUT/runs/$name/testing" 2>&1 | grep -E "accuracy|sensitivity|specificity|roc_auc"
}
run w32-type-s0 140 --arch resnet18-w32 --labels type --epochs 100 --batch-size 128 --patience 30 --seed 0
run w32-binary  100 --arch resnet18-w32 --labels binary --epochs 100 --batch-size 128 --patience 30 --seed 0
run seed-cnn    60 --arch seed-cnn --labels binary --epochs 50 --batch-size 64 --lr 1e-3 --weight-decay 0 --patience 10 --seed 0
run w32-type-s1 100 --arch resnet18-w32 --labels type --epochs 100 --batch-size 128 --patience 30 --seed 1
run r18-type    100 --arch resnet18 --labels type --epochs 100 --batch-size 128 --patience 30 --seed 0
# Come back: the small models as files, everything else (logs, curves, metrics) in one archive.
for m in w32-type-s0 w32-binary w32-type-s1; do [ -f "$OUT/runs/$m.safetensors" ] && mv "$OUT/runs/$m.safetensors" "$OUT/"; done
rm -f "$OUT"/runs/*.safetensors
tar -czf "$OUT/runs.tar.gz" -C "$OUT" runs && rm -rf "$OUT/runs"
ls -la "$OUT"
