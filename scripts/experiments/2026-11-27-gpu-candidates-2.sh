#!/usr/bin/env bash
# Second GPU session: the default architecture with the wider "site shift" augmentation, several seeds and
# batch sizes. The bundled model is picked by the lowest validation loss (grouped split of Training), a rule
# fixed before any of these runs is scored on Testing; Testing is scored afterwards for the record only.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT/runs"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi -L 2>/dev/null
extra=(); [ "${QUICK:-0}" = 1 ] && extra=(--limit 200 --max-steps 3 --device cpu)
AUG=(--zoom 0.75 1.3 --rotation 15 --translate 0.1 --gamma 0.6 1.6 --noise 0.03 --brightness 0.6 1.5)
run() {  # name, seconds allowed, train options...
  local name=$1 secs=$2; shift 2
  echo "== $name"
  timeout "$secs" python3 -m braintriage train .devdata/training-200.npz -o "$OUT/runs/$name.safetensors" \
    --run-dir "$OUT/runs/$name" "${AUG[@]}" "$@" "${extra[@]}" > "$OUT/runs/$name.log" 2>&1
  echo "rc=$?"; grep -E "^saved|Error" "$OUT/runs/$name.log" | tail -3
}
run s0-b128 100 --epochs 150 --batch-size 128 --patience 40 --seed 0
run s1-b128 100 --epochs 150 --batch-size 128 --patience 40 --seed 1
run s2-b128 100 --epochs 150 --batch-size 128 --patience 40 --seed 2
run s0-b64  100 --epochs 150 --batch-size 64 --patience 40 --seed 0
run s1-b64  100 --epochs 150 --batch-size 64 --patience 40 --seed 1
best=$(python3 - "$OUT/runs" <<'PY'
import json, pathlib, sys
runs = {p.parent.name: json.loads(p.read_text())["validation_metrics"]["loss"]
        for p in pathlib.Path(sys.argv[1]).glob("*/metadata.json")}
for k, v in sorted(runs.items(), key=lambda kv: kv[1]): print(f"validation loss {v:.4f} {k}", file=sys.stderr)
print(min(runs, key=runs.get))
PY
)
echo "selected by validation loss: $best" | tee "$OUT/runs/selected.txt"
for f in "$OUT"/runs/*.safetensors; do
  n=$(basename "$f" .safetensors)
  python3 -m braintriage evaluate .devdata/testing-200.npz -m "$f" --output-dir "$OUT/runs/$n/testing" > "$OUT/runs/$n/testing.txt" 2>&1
  echo "$n: $(grep -E '^│ (accuracy|sensitivity) ' "$OUT/runs/$n/testing.txt" | tr -s ' │' ' ' | tr '\n' ' ')"
  mv "$f" "$OUT/"
done
tar -czf "$OUT/runs.tar.gz" -C "$OUT" runs && rm -rf "$OUT/runs"
ls -la "$OUT"
