"""Pack what a lent GPU machine needs to run experiment configs, into .devcarry/ (git-ignored).

    python experiments/pack_for_device.py [--size 160] [--data ../shared/data]

That machine has no copy of the data and no network, and what travels to it is capped at 64 MiB, the
repository included. So it gets:
- cache/FOLDER.npz: each source's decoded cache at the configs' input size (lossless PNG inside; the same
  images and fingerprint as here; `experiments/run.py --source-cache .devcarry/cache` trains on them);
- lite0-fp16.pth: the packaged EfficientNet-Lite0 ImageNet weights without the ImageNet head (never loaded:
  pretrained.py drops it) and rounded to float16, which halves them to 6.8 MB. The largest per-tensor
  relative error this makes is 2.7e-4 (a batch-norm running mean), far below one fine-tuning step.
  experiments/device.sh restores them to float32 as an installed package before training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from braintriage.cache import cached_decode  # noqa: E402
from braintriage.datasets import load_dataset  # noqa: E402
from braintriage.pretrained import weights_file  # noqa: E402
from braintriage.train import TrainConfig, preprocess_config  # noqa: E402

SOURCES = ("brain-tumor-classification-mri", "br35h", "figshare-cheng2017")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    out = ROOT / ".devcarry"
    (out / "cache").mkdir(parents=True, exist_ok=True)
    preprocess = preprocess_config(TrainConfig(data=[], image_size=args.size))
    for name in SOURCES:
        decoded = cached_decode(load_dataset(args.data / name, split="training"), preprocess)
        decoded.save(out / "cache" / f"{name}.npz")
    raw = torch.load(weights_file("efficientnet-lite0"), map_location="cpu", weights_only=True)
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in raw.items() if not k.startswith("_fc.")}
    torch.save(half, out / "lite0-fp16.pth")
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{out}: {total / 2**20:.1f} MiB (plus the repository's tracked files; 64 MiB travel in all)")


if __name__ == "__main__":
    main()
