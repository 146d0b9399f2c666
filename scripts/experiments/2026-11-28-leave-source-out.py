"""Leave-source-out validation inside Training: a proxy for the unleaked Testing tumors that needs no Testing.

`Training` mixes sources, and its file size tells them apart: every glioma, 679 meningiomas and 799 pituitary
tumors are 512x512 JPEGs (one source), while 143 meningiomas and 28 pituitary tumors are not (others), like
390 of the 395 normals. The unleaked `Testing` tumors come from another source too, which a random or
grouped validation split cannot imitate. Here the model trains on the 512x512 tumors and 80% of the normals
(by near-duplicate group) and is scored on the 171 other-source tumors and the remaining normals: how well
does it find tumors from a source it never saw tumors from?

    python scripts/experiments/2026-11-28-leave-source-out.py TRAINING_ROOT OUT_DIR CACHE.npz [CACHE.npz ...]
        [--remap P] [--blur S] [--bias-field B] [--seeds 2 3]
    python scripts/experiments/2026-11-28-leave-source-out.py TRAINING_ROOT - CACHE.npz --write-sizes SIZES.json

Each cache is one variant (for example plain, --crop-to-head and --equalize), trained with the laptop recipe (80
epochs, 96 -> 200 px, batch 64, seed 2) on the same images; `--remap P` adds the random intensity curve
(`--intensity-remap P`) to every variant, `--blur S` and `--bias-field B` blur and coil shading (session 9),
`--seeds` trains each variant once per seed (the split stays the same: its own seed is fixed at 2). Early stopping
is off (patience = epochs) and the numbers are given both for the last epoch (not chosen on the held-out set) and
for the epoch with the lowest held-out loss (optimistic); at the last epoch also at the threshold that keeps 95% of
the held-out normals right, with each held-out image's P(tumor) (session 8 on). TRAINING_ROOT may be a SIZES.json
instead (what the split needs from the JPEGs: their stored sizes), for a GPU machine that carries the cache only.
The first runs (session 6, plain and head crop, seed 2) were exploratory, without a rule; rules for later
comparisons are written in the shell scripts that run them, before they run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from braintriage.augment import AugmentPolicy
from braintriage.cache import DecodedSet
from braintriage.metrics import binary_metrics
from braintriage.models import tumor_probability
from braintriage.hardware import pick_device
from braintriage.train import TrainConfig, fit, prepare_data

RECIPE = dict(epochs=80, start_size=96, batch_size=64, patience=80, seed=2,
              augment=AugmentPolicy(zoom=(0.75, 1.3), rotation_degrees=15, translate=0.1, gamma=(0.6, 1.6),
                                    noise=0.03))


def image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:  # the header only; closed at once
        return im.size


def stored_sizes(root: Path, paths: np.ndarray) -> dict[str, tuple[int, int]]:
    """Each image's stored (width, height): read from the files under `root`, or from a JSON file written by
    `--write-sizes` (a GPU machine gets the decoded cache but not the JPEGs)."""
    if root.suffix == ".json":
        return {k: tuple(v) for k, v in json.loads(root.read_text()).items()}
    return {str(p): image_size(root / p) for p in paths}


def source_split(decoded: DecodedSet, root: Path, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Held out: tumors not stored as 512x512, and 20% of the normals' near-duplicate groups; whole groups."""
    sizes = stored_sizes(root, decoded.paths)
    square_512 = np.array([sizes[str(p)] == (512, 512) for p in decoded.paths])
    normal_groups = np.unique(decoded.groups[decoded.tumor == 0])
    rng = np.random.default_rng(seed)
    held_normal_groups = rng.choice(normal_groups, round(0.2 * len(normal_groups)), replace=False)
    held = ((decoded.tumor == 1) & ~square_512) | ((decoded.tumor == 0) & np.isin(decoded.groups, held_normal_groups))
    held = np.isin(decoded.groups, decoded.groups[held])  # a near-copy never sits on both sides
    return np.flatnonzero(~held), np.flatnonzero(held)


def main(root: str, out_dir: str, caches: list[str], remap: float = 0.0, seeds: tuple[int, ...] = (2,),
         epochs: int = RECIPE["epochs"], blur: float = 0.0, bias_field: float = 0.0) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "leave_source_out.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    for seed in seeds:
        for cache in caches:
            name = (Path(cache).stem + (f"-remap{remap:g}" if remap else "") + (f"-blur{blur:g}" if blur else "")
                    + (f"-bias{bias_field:g}" if bias_field else "") + (f"-seed{seed}" if seed != 2 else ""))
            augment = dataclasses.replace(RECIPE["augment"], intensity_remap=remap, blur=blur, bias_field=bias_field)
            results[name] = run_variant(root, out, cache, augment, seed, name, epochs)
            print(json.dumps(results[name], indent=2), flush=True)
            results_file.write_text(json.dumps(results, indent=2))


def found_at_specificity(y: np.ndarray, p: np.ndarray, specificity: float) -> dict:
    """Tumors found at the lowest threshold that keeps at least `specificity` of the held-out normals right.
    A deployed model's threshold is set on in-source normals (the issue asks specificity >= 0.95), and the
    held-out normals here are in-source, so this is the operating point that matters; at a fixed 0.5 a
    variant can find more tumors just by calling more of everything a tumor."""
    normals = np.sort(p[y == 0])
    threshold = float(normals[int(np.ceil(specificity * len(normals))) - 1])  # a tumor call is p > threshold
    return {"threshold": threshold, "tumors_found": int((p[y == 1] > threshold).sum()),
            "normals_right": int((p[y == 0] <= threshold).sum())}


def run_variant(root: str, out: Path, cache: str, augment: AugmentPolicy, seed: int, name: str, epochs: int
                ) -> dict:
    pre = DecodedSet.load(cache).preprocess  # the variant's preprocessing (crop, equalisation) is the cache's
    recipe = dict(RECIPE, seed=seed, epochs=epochs, patience=epochs, augment=augment)
    cfg = TrainConfig(data=cache, crop_to_head=pre.crop_to_head, equalize=pre.equalize, run_dir=str(out), **recipe)
    data = prepare_data(cfg)
    train_idx, held_idx = source_split(data.decoded, Path(root))
    y = data.decoded.tumor[held_idx]
    fitted = fit(cfg, data, train_idx, held_idx, pick_device("auto"), desc=name)
    p = tumor_probability(fitted.val_logits)[0].cpu().numpy()
    p_last = tumor_probability(fitted.last_val_logits)[0].cpu().numpy()
    last = fitted.history[-1]
    return {
        "crop_to_head": pre.crop_to_head, "equalize": pre.equalize, "intensity_remap": augment.intensity_remap,
        "blur": augment.blur, "bias_field": augment.bias_field, "seed": seed,
        "train_images": len(train_idx), "held_out_tumors": int(y.sum()),
        "held_out_normals": int((y == 0).sum()),
        "best_epoch": fitted.best_row["epoch"], "best_held_out_loss": fitted.best_loss,
        "at_best_epoch_0.5": binary_metrics(y, p, 0.5),
        "at_last_epoch": {k: last[k] for k in last if k.startswith("val_")},
        "at_last_epoch_specificity_0.95": found_at_specificity(y, p_last, 0.95),
        "held_out_is_tumor": y.astype(int).tolist(),
        "held_out_p_tumor_at_last_epoch": [round(float(v), 5) for v in p_last],
        "history": [{k: row[k] for k in ("epoch", "val_loss", "val_recall", "val_specificity")
                     if k in row} for row in fitted.history],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("out_dir")
    parser.add_argument("caches", nargs="+")
    parser.add_argument("--remap", type=float, default=0.0)
    parser.add_argument("--blur", type=float, default=0.0)
    parser.add_argument("--bias-field", type=float, default=0.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[2])
    parser.add_argument("--epochs", type=int, default=RECIPE["epochs"], help="fewer only for dry runs")
    parser.add_argument("--write-sizes", help="only write the images' stored sizes to this JSON file (for "
                                              "a machine without the JPEGs: pass it as TRAINING_ROOT there)")
    args = parser.parse_args()
    if args.write_sizes:
        paths = DecodedSet.load(args.caches[0]).paths
        Path(args.write_sizes).write_text(json.dumps(stored_sizes(Path(args.root), paths)))
        raise SystemExit(0)
    main(args.root, args.out_dir, args.caches, args.remap, tuple(args.seeds), args.epochs, args.blur, args.bias_field)
