"""Compare out-of-distribution guard designs on one finished leave-Br35H-out run's weights (session 18's table).

    python experiments/guard_variants.py runs/RUN [MORE ...]

For each run: the pooled features of its training and validation splits (with one lesion-painted copy of each
normal, as `train.calibrate_ood` fits the guard), of every held-out Br35H slice and of the 11 non-MRI inputs of
tests/test_ood.py. Each design is fitted on the training split, thresholded on the validation split, and scored
by its Br35H alarm rate and how many of the 11 it flags (with the blank and bright-background rules that come
before the features). Exploration, not a rule: a design found here is adopted only by a config whose rule
names other weights or sources.
"""

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from braintriage import ood  # noqa: E402
from braintriage.inference import Predictor  # noqa: E402
from braintriage.preprocess import preprocess  # noqa: E402
from braintriage.train import TrainConfig, grouped_split, painted_normals, prepare_data  # noqa: E402
from test_ood import non_mri_images  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
PENULTIMATE = slice(0, 112)  # efficientnet-lite0: the stage before the last has 112 channels, the last 1,280
LAST = slice(112, None)


def features(run: Path) -> dict:
    config = json.loads((run / "config.json").read_text())
    cfg = TrainConfig(data=[str(Path(s).resolve()) for s in config["sources"]], holdout_source=config["holdout_source"],
                      image_size=config["train"]["image_size"], seed=config["train"]["seed"],
                      synthetic_lesions=config["train"].get("synthetic_lesions", 0.0))
    data = prepare_data(cfg, log=lambda *a: None)
    train_idx, val_idx = grouped_split(data.decoded, cfg.val_fraction, cfg.seed)
    predictor = Predictor(str(run / "model.safetensors"))
    pooled = lambda images: predictor.pooled_features(images, ("penultimate_stage", "last_stage"))  # noqa: E731

    def split(idx):
        images = data.decoded.images[idx]
        if cfg.synthetic_lesions:
            images = np.concatenate([images, painted_normals(data.decoded, idx, cfg.seed)])
        return pooled(images)

    others = non_mri_images(DATA / "brain-tumor-classification-mri")
    views = np.stack([preprocess(im.convert("L"), predictor.preprocess) for im in others.values()])
    refused = np.array([v.std() < ood.MIN_STD or ood.border_level(im.convert("L")) > ood.MAX_BORDER_LEVEL
                        for v, im in zip(views, others.values())])
    return {"train": split(train_idx), "val": split(val_idx), "br35h": pooled(data.held_out.images),
            "non_mri": pooled(views), "refused": refused}


def mahalanobis(f: dict, cols: slice, components: int = 32, margin: float = 1.0):
    params = ood.fit(f["train"][:, cols], f["val"][:, cols], components=components, margin=margin)
    return lambda x: ood.score(x[:, cols], params), params["threshold"]


def nearest_neighbours(f: dict, k: int = 5):
    std = f["train"].std(0)
    scale = np.maximum(std, 1e-3 * std.max())  # as ood.fit standardises
    mean = (f["train"] / scale).mean(0)
    unit = lambda x: (x / scale - mean) / np.linalg.norm(x / scale - mean, axis=1, keepdims=True)  # noqa: E731
    bank = unit(f["train"])
    score = lambda x: np.sort(1 - unit(x) @ bank.T, axis=1)[:, k - 1]  # noqa: E731
    return score, float(np.percentile(score(f["val"]), ood.PERCENTILE))


DESIGNS = {
    "both stages, 32 components": lambda f: mahalanobis(f, slice(None)),
    "both stages, 128 components": lambda f: mahalanobis(f, slice(None), 128),
    "k-nearest neighbours (cosine, k 5), both stages": nearest_neighbours,
    "last stage alone, 32 components": lambda f: mahalanobis(f, LAST),
    "stage before the last alone, 32 components": lambda f: mahalanobis(f, PENULTIMATE),
    "stage before the last, threshold 1.5 x the 99.5th percentile": lambda f: mahalanobis(f, PENULTIMATE, margin=1.5),
}

if __name__ == "__main__":
    for run in map(Path, sys.argv[1:]):
        f = features(run)
        print(f"{run}\n| guard | Br35H alarms | non-MRI flagged (of 11) | least non-MRI score / threshold |")
        for name, design in DESIGNS.items():
            score, threshold = design(f)
            ratios = score(f["non_mri"]) / threshold
            flagged = f["refused"] | (ratios > 1)
            print(f"| {name} | {np.mean(score(f['br35h']) > threshold):.3f} | {flagged.sum()} | "
                  f"{ratios[~f['refused']].min():.2f} |")
