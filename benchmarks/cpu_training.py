"""CPU training speed, fp32 unless asked (a CPU without bf16): this code against an older revision, in one run.

    python benchmarks/cpu_training.py --compare-with REV [--epochs 1] [--repeats 2] [--only default|pretrained]
        [--precision fp32] [--new-start-size PX [--new-resize-ramp A B]] [--new-frozen-blocks N]
        [--new-precision bf16] [--output benchmarks/cpu_training.json]

Trains each architecture below for `--epochs` whole epochs of the real data (the three sources, decoded
caches), each run in its own process (`train.fit`, as `braintriage train` runs it: augmentation, forward,
backward, AdamW and the per-epoch validation), and reports training images per second of that loop and the
epochs' training and validation losses. The old revision runs from a temporary git worktree; both use the
same data, split, seed and torch, and runs of the two alternate (`--repeats`, median), since this machine's
speed drifts. `same_losses`: whether the two learned the same (losses within float tolerance).
`--new-start-size PX` runs this code with progressive resizing (`train --start-size`: early epochs at PX, growing
to the full size), measured over `--epochs` (a whole run: the schedule is relative to the run's length); it
changes what is learned by design (`same_losses` is then false), so its quality is a config's
(experiments/configs/*-start96*.json, *-start128.json); `--new-resize-ramp A B` sets when the size grows (`train
--resize-ramp`). `--new-frozen-blocks N` runs this code with the pretrained stem and first N blocks kept as loaded
(`train --frozen-blocks`), a change of what is learned too (experiments/configs/*-frozen3.json).
`--new-precision bf16` runs this code in bf16 autocast against the old code in `--precision`: for a CPU that
computes bf16 natively (AVX512-BF16 or AMX), where `--precision auto` picks it; bf16 rounds differently, so
`same_losses` is then false too.

  default    resnet18-w32 from scratch at 200 px, the `train` defaults (the default architecture) at full size
             throughout; `train` now resizes it progressively by default, which `--new-start-size 96
             --new-resize-ramp 0.3 0.55` measures (benchmarks/cpu_training_default.json)
  pretrained the bundled model's recipe: efficientnet-lite0 from ImageNet weights at 160 px
             (experiments/configs/all-lite0-160.json)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import REPO, hardware, revision_tree  # noqa: E402

DATA = REPO.parent / "shared" / "data"
SOURCES = [str(DATA / name) for name in ("brain-tumor-classification-mri", "br35h", "figshare-cheng2017")]
RECIPE_AUGMENT = {"zoom": [0.75, 1.3], "rotation_degrees": 15.0, "translate": 0.1, "gamma": [0.6, 1.6],
                  "noise": 0.03, "intensity_remap": 0.2}
ARCHITECTURES = {
    "default": {"architecture": "resnet18-w32", "image_size": 200},
    "pretrained": {"architecture": "efficientnet-lite0", "pretrained": True, "backbone_lr_scale": 0.3,
                   "lr": 0.001, "labels": "type", "image_size": 160, "augment": RECIPE_AUGMENT},
}
# Runs in a fresh process with PYTHONPATH set to one tree's src/: one fit, its history as JSON on stdout.
FIT = r"""
import json, sys, torch
from braintriage.augment import AugmentPolicy
from braintriage.train import TrainConfig, fit, grouped_split, prepare_data
spec = json.loads(sys.argv[1])
augment = AugmentPolicy.from_dict(spec.pop("augment", {}))
cfg = TrainConfig(augment=augment, **spec)
data = prepare_data(cfg, log=lambda *a: None)
train_idx, val_idx = grouped_split(data.decoded, cfg.val_fraction, cfg.seed)
fitted = fit(cfg, data, train_idx, val_idx, torch.device("cpu"), log=lambda *a: None)
print(json.dumps({"history": fitted.history, "train_images": len(train_idx), "validation_images": len(val_idx)}))
"""


def measure(src: Path, settings: dict, epochs: int, seed: int, precision: str) -> dict:
    spec = {"data": SOURCES, "epochs": epochs, "patience": epochs, "seed": seed, "precision": precision,
            "device": "cpu", "run_dir": os.devnull, **settings}
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run([sys.executable, "-c", FIT, json.dumps(spec)], capture_output=True, text=True,
                          env=env, cwd=REPO)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    out = json.loads(done.stdout.strip().splitlines()[-1])
    history = out["history"]
    images = history[-1]["step"] * spec.get("batch_size", 64)
    seconds = sum(row["seconds"] for row in history)
    return {"settings": settings, "epochs": len(history), "images_per_s": round(images / seconds, 1),
            "epoch_seconds": [round(row["seconds"], 1) for row in history],
            "train_loss": [round(row["train_loss"], 6) for row in history],
            "val_loss": [round(row["val_loss"], 6) for row in history],
            "train_images": out["train_images"], "validation_images": out["validation_images"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compare-with", required=True, help="the older revision (commit) to measure beside")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precision", default="fp32", help="fp32 (a CPU without bf16), or bf16 / auto")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each variant, interleaved (median)")
    ap.add_argument("--only", choices=sorted(ARCHITECTURES), help="one architecture only")
    ap.add_argument("--new-start-size", type=int, help="this code trains with progressive resizing from PX")
    ap.add_argument("--new-resize-ramp", type=float, nargs=2, metavar=("A", "B"),
                    help="with --new-start-size: the shares of the epochs where the size starts to grow and is full")
    ap.add_argument("--new-frozen-blocks", type=int,
                    help="this code keeps the pretrained stem and first N blocks as loaded (`train --frozen-blocks`)")
    ap.add_argument("--new-precision", help="this code trains in this precision (bf16: autocast), the old in "
                    "--precision")
    ap.add_argument("--output", type=Path, default=REPO / "benchmarks" / "cpu_training.json")
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    results = {}
    with revision_tree(args.compare_with) as old_tree:
        for name, settings in ARCHITECTURES.items():
            if args.only and name != args.only:
                continue
            new_settings = {**settings, **({"start_size": args.new_start_size} if args.new_start_size else {}),
                            **({"resize_ramp": args.new_resize_ramp} if args.new_resize_ramp else {}),
                            **({"frozen_blocks": args.new_frozen_blocks} if args.new_frozen_blocks else {})}
            variants = {"old": (old_tree / "src", settings, args.precision),
                        "new": (REPO / "src", new_settings, args.new_precision or args.precision)}
            # Interleaved repeats: this machine's speed drifts by 10-30% over minutes.
            runs = {label: [] for label in variants}
            for _ in range(args.repeats):
                for label, (src, chosen, precision) in variants.items():
                    runs[label].append(measure(src, chosen, args.epochs, args.seed, precision))
            rows = {}
            for label, measured in runs.items():
                speeds = [m["images_per_s"] for m in measured]
                rows[label] = {**measured[0], "images_per_s": round(float(np.median(speeds)), 1),
                               "images_per_s_each": speeds}
            rows["speedup"] = round(rows["new"]["images_per_s"] / rows["old"]["images_per_s"], 2)
            rows["same_losses"] = all(
                np.allclose(rows["old"][k], rows["new"][k], rtol=1e-3, atol=1e-4) for k in ("train_loss", "val_loss"))
            for label in variants:
                row = rows[label]
                print(f"{name} {label}: {row['images_per_s']} images/s (each {row['images_per_s_each']}), "
                      f"train loss {row['train_loss']}, val loss {row['val_loss']}", flush=True)
            print(f"{name}: {rows['speedup']}x, same losses: {rows['same_losses']}", flush=True)
            results[name] = rows
    record = {"benchmark": "cpu_training", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "commit": commit, "old_commit": args.compare_with, "precision": args.precision,
              "new_precision": args.new_precision or args.precision, "hardware": hardware(),
              "command": "python benchmarks/cpu_training.py " + " ".join(sys.argv[1:]), "results": results}
    args.output.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
