#!/usr/bin/env bash
# Issue 7 on a lent GPU: the leave-source-out proxy (scripts/experiments/2026-11-28-leave-source-out.py) with
# five fresh seeds (4-8), plain against the random intensity curve (--remap 0.5). About 18 minutes per run
# on the 2-core CPU, so a CPU session managed seeds 2 and 3 only; on an H200 a run should take under a minute.
# Carry .devdata/training-200.npz and .devdata/training-sizes.json (made on the CPU machine by the script's
# --write-sizes: the split needs the JPEGs' stored sizes, and the JPEGs do not travel). QUICK=1: dry run on
# a CPU with 1-epoch runs. Writes $OUT/lso/leave_source_out.json and a log.
#
# Rule, written in session 7 after seeing the seed-2 and seed-3 CPU runs (docs/model.md) and before any of
# these seeds ran: the intensity curve enters the candidate recipes if, over seeds 4-8 together, the remap
# runs at the last epoch have (a) a higher mean held-out ROC-AUC of P(tumor) than the plain runs, (b) more of
# the 5 x 185 held-out tumors found at 0.5, and (c) at most 10 fewer of the 5 x 85 held-out normals right.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT/lso"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
SCRIPT=scripts/experiments/2026-11-28-leave-source-out.py
SIZES=.devdata/training-sizes.json; CACHE=.devdata/training-200.npz
SEEDS=(4 5 6 7 8); EPOCHS=80
[ "${QUICK:-0}" = 1 ] && SEEDS=(4) && EPOCHS=1  # a 1-epoch run of each variant: the plumbing, before device time
for remap in 0 0.5; do
  echo "== remap $remap"
  timeout 280 python3 "$SCRIPT" "$SIZES" "$OUT/lso" "$CACHE" --remap "$remap" --seeds "${SEEDS[@]}" \
    --epochs "$EPOCHS" >> "$OUT/lso.log" 2>&1
  echo "rc=$?"
done
python3 - "$OUT/lso/leave_source_out.json" <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))
for name, r in runs.items():
    last = r["at_last_epoch"]
    print(f"{name}: tumors found {round(last['val_recall'] * r['held_out_tumors'])}/{r['held_out_tumors']}, "
          f"normals right {round(last['val_specificity'] * r['held_out_normals'])}/{r['held_out_normals']}, "
          f"AUC {last.get('val_roc_auc')}")
PY
