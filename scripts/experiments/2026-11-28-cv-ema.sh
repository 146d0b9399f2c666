#!/usr/bin/env bash
# Session 5 (2026-11-28, CPU only): does weight averaging (EMA of the weights, decay 0.998 per step) help the
# laptop recipe? Grouped 5-fold cross-validation on Training, the same folds (seed 2) as the session-4
# baseline in runs/cv-cpu (docs/model.md, "Grouped cross-validation of the laptop recipe").
#
# Rule, fixed before the run: adopt --ema-decay 0.998 into the recipes if the held-out loss is lower than
# the baseline's in at least 4 of the 5 folds AND the mean specificity at 0.5 is not lower. Testing is not
# looked at for this choice.
#
# Why 0.998: a time constant of 500 steps, about 14 epochs at batch 64 (the last sixth of an 80-epoch run)
# and 26 epochs of the 150-epoch GPU recipe at batch 128: the averaging window of SWA/SWAD-style training.
#
# Attempt 1 averaged the BatchNorm running statistics along with the weights (use_buffers=True). Stopped
# after 2 folds, both worse than the baseline (held-out loss 0.303 against 0.253 in fold 1; 0.299 at epoch 75
# against 0.222 in fold 2, still falling), so the rule could no longer be met. Likely cause: the averaged
# statistics mix networks and, with progressive resizing, image sizes. Attempt 2 (this command) averages
# the weights only and re-estimates BatchNorm statistics for the average before each validation, as SWA
# does; same decay, same rule.
set -euo pipefail
braintriage train .devdata/training-200.npz --folds 5 --epochs 80 --start-size 96 --batch-size 64 \
  --zoom 0.75 1.3 --rotation 15 --translate 0.1 --gamma 0.6 1.6 --noise 0.03 --patience 80 --seed 2 \
  --ema-decay 0.998 --run-dir runs/cv-cpu-ema
