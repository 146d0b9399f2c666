"""Which of the bundled model's features should the out-of-distribution guard read? (session 4, issue 7)

    python scripts/experiments/2026-11-28-ood-layers.py .devdata/training-200.npz [seed=2]

Fits the guard (braintriage.ood, training split of the model's grouped split; threshold at the 99.5th
percentile of its validation split) on pooled features of different stages of the bundled network, and
prints each non-MRI "development" image's score in units of the threshold (> 1 = flagged). The development
images are not the ones tests/test_ood.py checks: two photos scikit-learn ships, matplotlib's topography
grid, images made here, and one real brain MRI slice matplotlib ships (s1045.ima, which should stay < 1).
Nothing here reads `Testing`.
"""

from __future__ import annotations

import gzip
import os
import sys

import matplotlib
import numpy as np
import sklearn.datasets
import torch
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

from braintriage import ood
from braintriage.cache import DecodedSet
from braintriage.modelfile import BUNDLED_MODEL, load_model
from braintriage.preprocess import preprocess
from braintriage.splits import grouped_split


def development_images() -> dict[str, np.ndarray]:
    sample = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data")
    photos = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
    ims = {n: Image.open(os.path.join(photos, n)).convert("L") for n in ("china.jpg", "flower.jpg")}
    topo = np.load(os.path.join(sample, "topobathy.npz"))["topo"].astype(float)
    ims["topography"] = Image.fromarray(((topo - topo.min()) / np.ptp(topo) * 255).astype(np.uint8))
    rng = np.random.default_rng(1)
    field = gaussian_filter(rng.standard_normal((300, 300)), 12)
    ims["smooth random field"] = Image.fromarray(((field - field.min()) / np.ptp(field) * 255).astype(np.uint8))
    yy, xx = np.mgrid[0:256, 0:256]
    ims["sine grating"] = Image.fromarray(((np.sin(xx / 6 + yy / 11) + 1) * 127).astype(np.uint8))
    table = Image.new("L", (500, 400), 255)
    draw = ImageDraw.Draw(table)
    for y in range(10, 400, 25):
        draw.line((10, y, 490, y), fill=0, width=2)
    for x in range(10, 500, 80):
        draw.line((x, 10, x, 390), fill=0, width=2)
    ims["table"] = table
    bar = np.zeros((256, 256), np.uint8)
    bar[100:140, 60:200] = 220
    ims["bright bar on black"] = Image.fromarray(bar)
    ims["salt and pepper"] = Image.fromarray(((rng.random((256, 256)) < 0.1) * 255).astype(np.uint8))
    mri = np.frombuffer(gzip.open(os.path.join(sample, "s1045.ima.gz")).read(), np.uint16).reshape(256, 256)
    ims["brain MRI (in distribution)"] = Image.fromarray((mri / mri.max() * 255).astype(np.uint8))
    return {name: preprocess(im) for name, im in ims.items()}


@torch.inference_mode()
def stage_features(model, images: np.ndarray, mean: float, std: float) -> dict[str, np.ndarray]:
    """Spatially pooled output of each of the four stages (two blocks each)."""
    out: dict[str, list] = {f"stage{k}": [] for k in range(1, 5)}
    for i in range(0, len(images), 64):
        h = model.stem(((torch.from_numpy(images[i:i + 64]).float() / 255 - mean) / std)[:, None])
        for k, block in enumerate(model.stages):
            h = block(h)
            if k % 2 == 1:
                out[f"stage{k // 2 + 1}"].append(h.mean(dim=(2, 3)))
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def main(cache: str, seed: int = 2) -> None:
    model, meta = load_model(BUNDLED_MODEL)
    norm = meta["input"]["normalization"]
    train = DecodedSet.load(cache)
    train_idx, val_idx = grouped_split(train, 0.15, seed)
    dev = development_images()
    feats = {name: stage_features(model, images, norm["mean"], norm["std"])
             for name, images in (("train", train.images[train_idx]), ("val", train.images[val_idx]),
                                  ("dev", np.stack(list(dev.values()))))}
    for stages in (["stage4"], ["stage3"], ["stage3", "stage4"], ["stage2", "stage3", "stage4"],
                   ["stage1", "stage2", "stage3", "stage4"]):
        x = {k: np.concatenate([v[s] for s in stages], axis=1) for k, v in feats.items()}
        params = ood.fit(x["train"], x["val"])
        ratio = ood.score(x["dev"], params) / params["threshold"]
        flagged = int((ratio[:-1] > 1).sum())
        print(f"{'+'.join(stages)}: {flagged} of {len(ratio) - 1} non-MRI flagged; "
              + ", ".join(f"{n} {r:.2f}" for n, r in zip(dev, ratio)))


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:]))
