#!/usr/bin/env bash
# Session 11 (2026-11-28, CPU only). The plain laptop recipe's grouped 5-fold CV again, command for command
# session 4's (runs/cv-cpu-oof), on this session's machine.
# Why: session 11 ran on an AMD EPYC (AVX512-BF16) where sessions 3-10 ran on an Intel Xeon (AMX), and the
# first fold of crop + curve 0.2, same command and seed as session 10's, came out different (held-out loss
# 0.286 against 0.312, normals right 70 against 73 of 79): the processor changes the numbers. Every CV rule so
# far compares a recipe with plain; a plain run on the same processor as the candidate's says (a) how far
# plain itself moves between processors, the noise floor of those rules, and (b) what the rule reads when
# both runs share a machine.
# Reading, fixed before either run finished: crop + curve 0.2 (2026-11-28-cv-crop-remap0.2.sh) is counted as
# passing its rule only if it passes against both plain runs, the recorded one (Xeon: 361 of 395 normals,
# binary log loss 0.0658) and this one. Testing is not looked at. About 75 minutes on the 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
test -f .devdata/training-200.npz || braintriage cache ../shared/data/brain-tumor-classification-mri \
  --split training -o .devdata/training-200.npz
braintriage train .devdata/training-200.npz --folds 5 --epochs 80 --start-size 96 --batch-size 64 --zoom 0.75 1.3 \
  --rotation 15 --translate 0.1 --gamma 0.6 1.6 --noise 0.03 --patience 80 --seed 2 --run-dir runs/cv-cpu-plain-epyc
