"""Pack what a lent GPU machine needs to run experiment configs, into .devcarry/ (git-ignored).

    python experiments/pack_for_device.py [--size 160] [--arch efficientnet-lite0 ...] [--data ../shared/data]
                                          [--jpeg-quality 92 --jpeg-sources SOURCE ...]

That machine has no copy of the data and no network, and what travels to it is capped at 64 MiB, the
repository included. So it gets:
- cache/FOLDER.npz: each source's decoded cache at the configs' input size (lossless PNG inside; the same
  images and fingerprint as here; `experiments/run.py --source-cache .devcarry/cache` trains on them). At 200 px
  the three sources take 72 MB as PNG, more than travels: `--jpeg-sources` stores the named ones as JPEG of
  `--jpeg-quality` instead (q92: about half the bytes, PSNR about 44 dB, an error of about 1.6 grey levels, under a
  fifth of the training noise augmentation's 0.03 x 255). Those are not the same images, so their fingerprint gets
  a "+jpegQ" suffix and every model and result trained on them says so. Keep a held-out source lossless: it is
  what the result is read on.
- ARCH-fp16.pth per `--arch`: its packaged ImageNet weights without the ImageNet head (never loaded:
  pretrained.py drops it) and rounded to float16, which halves them (Lite0 6.8 MB, Lite1 8.4 MB). The largest
  per-tensor relative error this makes is 2.7e-4 (a batch-norm running mean), far below one fine-tuning step.
  experiments/device.sh restores them to float32 as installed packages before training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from braintriage.cache import DecodedSet, cached_decode  # noqa: E402
from braintriage.datasets import load_dataset  # noqa: E402
from braintriage.pretrained import weights_file  # noqa: E402
from braintriage.train import TrainConfig, preprocess_config  # noqa: E402

SOURCES = ("brain-tumor-classification-mri", "br35h", "figshare-cheng2017")


def save_as_jpeg(decoded: DecodedSet, path: Path, quality: int) -> float:
    """The cache file with JPEG of `quality` inside (its fingerprint marked "+jpegQ"); returns the PSNR in dB
    of what was written, read back, against the images as decoded here."""
    decoded.save(path, jpeg_quality=quality)
    error = DecodedSet.load(path).images.astype(np.float64) - decoded.images
    return float(10 * np.log10(255 ** 2 / (error ** 2).mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--arch", nargs="+", default=["efficientnet-lite0"], help="whose ImageNet weights to carry")
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=SOURCES)
    parser.add_argument("--jpeg-sources", nargs="*", default=[], choices=SOURCES)
    parser.add_argument("--jpeg-quality", type=int, default=92)
    args = parser.parse_args()
    out = ROOT / ".devcarry"
    for old in out.rglob("*"):
        if old.is_file():
            old.unlink()  # what travels is what this call packs, nothing left from an earlier one
    (out / "cache").mkdir(parents=True, exist_ok=True)
    preprocess = preprocess_config(TrainConfig(data=[], image_size=args.size))
    for name in args.sources:
        decoded = cached_decode(load_dataset(args.data / name, split="training"), preprocess)
        if name in args.jpeg_sources:
            psnr = save_as_jpeg(decoded, out / "cache" / f"{name}.npz", args.jpeg_quality)
            print(f"{name}: JPEG q{args.jpeg_quality}, PSNR {psnr:.1f} dB against the PNG cache")
        else:
            decoded.save(out / "cache" / f"{name}.npz")
    for arch in args.arch:
        raw = torch.load(weights_file(arch), map_location="cpu", weights_only=True)
        half = {k: (v.half() if v.is_floating_point() else v) for k, v in raw.items() if not k.startswith("_fc.")}
        torch.save(half, out / f"{arch}-fp16.pth")
    for f in sorted(out.rglob("*")):
        if f.is_file():
            print(f"{f.relative_to(out)}: {f.stat().st_size / 2**20:.1f} MiB")
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{out}: {total / 2**20:.1f} MiB (plus the repository's tracked files; 64 MiB travel in all)")


if __name__ == "__main__":
    main()
