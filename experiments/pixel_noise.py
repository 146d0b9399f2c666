"""How alike neighbouring pixels are (`ood.neighbour_correlation`, the pixel-noise refusal of session 57) on every
image of the training sources, on the suite's synthetic phantoms and on the guard test's 11 non-MRI inputs.

    python experiments/pixel_noise.py [--data ../shared/data] [--csv OUT.csv]

Prints, per source, the count below `ood.NOISE_CORRELATION` (each one a real slice the refusal would turn away), the
least value and low percentiles; then each phantom and non-MRI input with its value. `Testing` is left out: it is
for final reporting only.
"""

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from braintriage import ood  # noqa: E402
from braintriage.datasets import load_dataset  # noqa: E402
from braintriage.preprocess import decode_image  # noqa: E402
from conftest import synthetic_slice  # noqa: E402
from test_ood import non_mri_images  # noqa: E402

SOURCES = ("brain-tumor-classification-mri", "br35h", "figshare-cheng2017")


def as_saved(pixels: np.ndarray, fmt: str) -> Image.Image:
    """A phantom as the suite writes it to disk (RGB, in `fmt`) and `predict` decodes it again."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert("RGB").save(buffer, format=fmt)
    buffer.seek(0)
    return decode_image(buffer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--csv", type=Path, help="write every training image's value here")
    args = parser.parse_args()
    rows = []
    for source in SOURCES:
        dataset = load_dataset(args.data / source, split="training")
        paths = [sample.path for sample in dataset.samples]
        values = np.array([ood.neighbour_correlation(decode_image(p)) for p in paths])
        rows += [(source, p, v) for p, v in zip(paths, values)]
        low = np.nanpercentile(values, [0.1, 1, 50])
        print(f"{source}: {len(values)} images, {int((values < ood.NOISE_CORRELATION).sum())} below "
              f"{ood.NOISE_CORRELATION}, {int(np.isnan(values).sum())} without a value; least {np.nanmin(values):.3f}, "
              f"0.1% {low[0]:.3f}, 1% {low[1]:.3f}, median {low[2]:.3f}")
    print("the suite's phantoms, as tests/conftest.py::image_folder saves them:")
    for i, fmt in enumerate(("JPEG", "PNG", "BMP", "TIFF")):
        value = ood.neighbour_correlation(as_saved(synthetic_slice(seed=i, lesion=i % 2 == 0), fmt))
        print(f"  seed {i}, {'with' if i % 2 == 0 else 'no'} blob, {fmt}: {value:.3f}")
    print("  other sizes the tests use (PNG, no blob): " + ", ".join(
        f"{size} px {ood.neighbour_correlation(as_saved(synthetic_slice(size), 'PNG')):.3f}"
        for size in (32, 48, 64, 96, 150, 160, 256)))
    print("the 11 non-MRI inputs (tests/test_ood.py):")
    for name, image in non_mri_images(args.data / "brain-tumor-classification-mri").items():
        print(f"  {name}: {ood.neighbour_correlation(image.convert('L')):.3f}")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            csv.writer(f).writerows([("source", "path", "neighbour_correlation"), *rows])


if __name__ == "__main__":
    main()
