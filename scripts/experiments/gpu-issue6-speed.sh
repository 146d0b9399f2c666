#!/usr/bin/env bash
# Issue 6 on a lent GPU (prepared on a CPU session, dry-run there with QUICK=1): training throughput at
# 200 px for batch sizes and torch.compile, then time to 0.88 on Testing with progressive resizing.
# Needs the carried caches .devdata/training-200.npz and .devdata/testing-200.npz (`braintriage cache`).
# Writes $OUT/train_speed_gpu*.json; copy the chosen one to benchmarks/train_speed_gpu.json and run
# benchmarks/collect_results.py.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi -L 2>/dev/null; python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__)"
Q=(); [ "${QUICK:-0}" = 1 ] && Q=(--device cpu)
EP=${EPOCHS:-60}; [ "${QUICK:-0}" = 1 ] && EP=2
bench() {  # name, seconds allowed, train_speed options...
  local name=$1 secs=$2; shift 2
  echo "== $name"
  timeout "$secs" python3 benchmarks/train_speed.py --train .devdata/training-200.npz \
    --test .devdata/testing-200.npz --output "$OUT/train_speed_gpu-$name.json" "$@" "${Q[@]}" > "$OUT/$name.log" 2>&1
  echo "rc=$?"; python3 - "$OUT/train_speed_gpu-$name.json" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except OSError:
    sys.exit(print("no result"))
t = r["target_run"]
print(f"steady {t['images_per_s_after_first_epoch']} img/s, loop {t['train_loop_seconds']} s, "
      f"wall {t['wall_seconds']} s, Testing {r['testing']['accuracy']:.3f}")
PY
}
# Throughput only (3 epochs at 200 px; the first epoch is warm-up and is left out of the steady rate).
bench b256        90 --epochs 3 --throughput-epochs 0 --batch-size 256
bench b512        90 --epochs 3 --throughput-epochs 0 --batch-size 512
bench b256-compile 150 --epochs 3 --throughput-epochs 0 --batch-size 256 --compile
# Time to target: the recipe with progressive resizing 128 -> 200 px.
bench target-b256 120 --epochs "$EP" --throughput-epochs 0 --batch-size 256 --start-size 128
bench target-b128 120 --epochs "$EP" --throughput-epochs 0 --batch-size 128 --start-size 128
ls -la "$OUT"
