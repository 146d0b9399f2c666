"""A held-out source read twice: as it is, and with every image's head histogram matched to one pooled histogram.

    python experiments/matched_reading.py MODEL [MODEL ...] --source ../shared/data/brain-tumor-classification-mri

Why (docs/model.md, "After session 44"): with the seed set held out, the recipes trained with histogram matching rank
it worse than the bundled recipe, and the seed set is the collection whose tumors and normals differ by sequence (and
so by grey-level look). If part of the bundled recipe's lead there is that look, it should lose more when no image's
look differs from another's: here every image takes the source's pooled head histogram
(`augment.match_to_histogram`, the training-time matching's quantile mapping; anatomy and contrast order kept).
Br35H, whose tumors and normals share sequences, is the control: a drop there is plain distribution shift.

MODEL is a leave-source-out run's model file (runs/lso-.../model.safetensors) that did not train on the source. Each
reading goes through `Predictor.predict_arrays` on the source decoded with the model's own preprocessing (as a
held-out evaluation decodes it), so the as-is ROC-AUC repeats the run's holdout.json. Printed per model: ROC-AUC as
is and matched, the drop with a paired bootstrap 95% interval (images resampled), and the mean P(tumor) of tumors and
normals in both readings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from braintriage.augment import head_histograms, match_to_histogram
from braintriage.cache import cached_decode
from braintriage.datasets import load_dataset
from braintriage.inference import Predictor

BOOTSTRAP = 500


def matched_to_pooled(images_u8: np.ndarray) -> np.ndarray:
    """Every image (N, H, W) uint8 matched to the pooled head histogram of all of them."""
    images = torch.from_numpy(images_u8).float().div_(255.0)[:, None]
    _, _, counts = head_histograms(images.reshape(len(images), -1))
    matched = match_to_histogram(images, counts.sum(0))
    return (matched[:, 0] * 255.0).round_().to(torch.uint8).numpy()


def drop_interval(tumor: np.ndarray, as_is: np.ndarray, matched: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Paired bootstrap 95% interval of ROC-AUC as is minus matched (the same resampled images both ways)."""
    rng = np.random.default_rng(seed)
    drops = []
    for _ in range(BOOTSTRAP):
        i = rng.integers(0, len(tumor), len(tumor))
        if tumor[i].min() == tumor[i].max():
            continue
        drops.append(roc_auc_score(tumor[i], as_is[i]) - roc_auc_score(tumor[i], matched[i]))
    lo, hi = np.percentile(drops, [2.5, 97.5])
    return float(lo), float(hi)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--source", type=Path, default=Path("../shared/data/brain-tumor-classification-mri"))
    args = parser.parse_args(argv)
    dataset = load_dataset(args.source)
    decoded, matched_images = None, None
    for model in args.models:
        predictor = Predictor(model)
        if decoded is None or decoded.preprocess != predictor.preprocess:
            decoded = cached_decode(dataset, predictor.preprocess)
            matched_images = matched_to_pooled(decoded.images)
        tumor = decoded.tumor
        as_is = predictor.predict_arrays(decoded.images)[0]
        matched = predictor.predict_arrays(matched_images)[0]
        auc_as_is, auc_matched = roc_auc_score(tumor, as_is), roc_auc_score(tumor, matched)
        lo, hi = drop_interval(tumor, as_is, matched)
        print(f"{model}: {len(tumor)} images of {args.source.name} ({tumor.sum()} tumors)\n"
              f"  ROC-AUC as is {auc_as_is:.4f}, matched {auc_matched:.4f}; "
              f"drop {auc_as_is - auc_matched:.4f} ({lo:.4f} to {hi:.4f})\n"
              f"  mean P(tumor), tumors: as is {as_is[tumor == 1].mean():.3f}, matched {matched[tumor == 1].mean():.3f};"
              f" normals: as is {as_is[tumor == 0].mean():.3f}, matched {matched[tumor == 0].mean():.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
