"""Runs of one recipe family side by side on their shared validation split, each at P(tumor) 0.5, with 95% CIs.

    python experiments/compare_validation.py runs/REFERENCE_RUN runs/RUN [runs/RUN2 ...]

A results row of a run trained on all sources holds its validation numbers without intervals, at the run's own
threshold. A rule like "no lower than the reference's lower 95% bounds" (issue 24) needs both: this rebuilds the
validation split the runs were trained against (the recipe's data through `train.prepare_data`: preprocessing, a
held-out source, leak exclusion; then `splits.grouped_split` with its fraction and seed),
scores it with each run's model through the inference path (`Predictor.predict_arrays`), and prints each run's
sensitivity, specificity and ROC-AUC at 0.5 with percentile bootstrap intervals (`metrics.bootstrap_ci`), then
whether each run clears the first run's lower bounds. The runs must share data fingerprint and every setting that
shapes the split or the images (DATA_SETTINGS), or the split would differ: checked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from braintriage.inference import Predictor
from braintriage.metrics import binary_metrics, bootstrap_ci
from braintriage.splits import grouped_split
from braintriage.train import TrainConfig, prepare_data

METRICS = ("sensitivity", "specificity", "roc_auc")
# The recipe settings that decide which images are validated and how they look (as `prepare_data` reads them).
DATA_SETTINGS = ("image_size", "crop_to_head", "equalize", "holdout_source", "exclude_leaked", "limit", "seed",
                 "labels", "val_fraction")


def split_key(metadata: dict) -> tuple:
    """What decides a run's validation split (and what its images look like)."""
    cfg = metadata["training"]["config"]
    return (metadata["training"]["data_fingerprint"], *(cfg[name] for name in DATA_SETTINGS))


def main(runs: list[Path]) -> None:
    metas = [json.loads((run / "metadata.json").read_text()) for run in runs]
    if len({split_key(m) for m in metas}) != 1:
        raise SystemExit(f"these runs were validated on different splits (data or one of {', '.join(DATA_SETTINGS)})")
    sources = json.loads((runs[0] / "config.json").read_text())["sources"]
    settings = {name: metas[0]["training"]["config"][name] for name in DATA_SETTINGS}
    decoded = prepare_data(TrainConfig(data=sources, **settings), log=lambda *_: None).decoded
    if decoded.fingerprint != metas[0]["training"]["data_fingerprint"]:
        raise SystemExit(f"the sources {sources} are not the data these runs were trained on")
    _, val_idx = grouped_split(decoded, settings["val_fraction"], settings["seed"])
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
