"""Runs of one recipe family side by side on their shared validation split, each at P(tumor) 0.5, with 95% CIs.

    python experiments/compare_validation.py runs/REFERENCE_RUN runs/RUN [runs/RUN2 ...]

A results row of a run trained on all sources holds its validation numbers without intervals, at the run's own
threshold. A rule like "no lower than the reference's lower 95% bounds" (issue 24) needs both: this rebuilds the
validation split the runs were trained against (same sources, same fraction and seed: `train.grouped_split`),
scores it with each run's model through the inference path (`Predictor.predict_arrays`), and prints each run's
sensitivity, specificity and ROC-AUC at 0.5 with percentile bootstrap intervals (`metrics.bootstrap_ci`), then
whether each run clears the first run's lower bounds. The runs must share data fingerprint, validation fraction,
seed and image size, or the split would differ: checked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from braintriage.inference import Predictor
from braintriage.metrics import binary_metrics, bootstrap_ci
from braintriage.train import TrainConfig, grouped_split, load_training_data

METRICS = ("sensitivity", "specificity", "roc_auc")


def split_key(metadata: dict) -> tuple:
    """What decides a run's validation split (and what its images look like)."""
    cfg = metadata["training"]["config"]
    return metadata["training"]["data_fingerprint"], cfg["val_fraction"], cfg["seed"], cfg["image_size"]


def main(runs: list[Path]) -> None:
    metas = [json.loads((run / "metadata.json").read_text()) for run in runs]
    if len({split_key(m) for m in metas}) != 1:
        raise SystemExit("these runs were validated on different splits (data, fraction, seed or image size)")
    sources = json.loads((runs[0] / "config.json").read_text())["sources"]
    fingerprint, val_fraction, seed, size = split_key(metas[0])
    decoded = load_training_data(TrainConfig(data=sources, image_size=size), log=lambda *_: None)
    if decoded.fingerprint != fingerprint:
        raise SystemExit(f"the sources {sources} are not the data these runs were trained on")
    _, val_idx = grouped_split(decoded, val_fraction, seed)
    y = decoded.tumor[val_idx]
    print(f"validation split: {len(y)} images ({int(y.sum())} tumors), each model at P(tumor) 0.5; "
          f"95% percentile bootstrap, 1000 resamples")
    bounds = None
    for run in runs:
        p, _, _ = Predictor(run / "model.safetensors").predict_arrays(decoded.images[val_idx])
        point, ci = binary_metrics(y, p, 0.5), bootstrap_ci(y, p, 0.5)
        cells = "  ".join(f"{name} {point[name]:.3f} ({ci[name][0]:.3f}-{ci[name][1]:.3f})" for name in METRICS)
        verdict = ""
        if bounds is None:
            bounds = {name: ci[name][0] for name in METRICS}
        else:
            below = [name for name in METRICS if point[name] < bounds[name]]
            verdict = "  below the first run's lower bound: " + (", ".join(below) if below else "none")
        print(f"{run.name}: {cells}{verdict}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    main([Path(a) for a in sys.argv[1:]])
