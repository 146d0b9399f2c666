"""Does a model lean on how a source stores its images rather than on anatomy? Decided on validation only.

    python scripts/experiments/2026-11-28-source-stress.py MODEL TRAINING_CACHE.npz DATASET_ROOT

In `Training`, every glioma, 97% of pituitary images and 83% of meningiomas are 512x512 JPEGs, while the
normals mostly come from smaller images (median longest side 262 px) of other shapes. A network can learn
"small, re-compressed image => no tumor", a cue that breaks on any other hospital's scans. This script
takes the model's own grouped validation split (rebuilt from its metadata, never `Testing`), re-renders each
original file as another source would store it, runs the one preprocessing path, and reports sensitivity
(tumors) and specificity (normals) per rendering:
  as-is          the file itself
  small-jpeg     tumors: downscaled to 256 px longest side and re-saved as JPEG quality 75
  large-jpeg     normals: upscaled to 512 px longest side and re-saved as JPEG quality 95
  tall           tumors: the central 78% of the width only (180 of the 395 normals are taller than wide, 5%
                 at width/height 0.79 or less), so preprocessing pads them with black bars as it does normals
A model that reads anatomy keeps its sensitivity on small-jpeg tumors; one that reads the source loses it.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from braintriage.cache import DecodedSet  # noqa: E402
from braintriage.inference import Predictor  # noqa: E402
from braintriage.metrics import binary_metrics  # noqa: E402
from braintriage.modelfile import read_metadata  # noqa: E402
from braintriage.preprocess import PreprocessConfig, decode_image, preprocess  # noqa: E402
from braintriage.splits import model_validation_split  # noqa: E402


def rerender(im: Image.Image, longest: int, quality: int) -> Image.Image:
    scale = longest / max(im.size)
    im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("L")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("cache")
    ap.add_argument("root", help="the dataset folder the cache was decoded from (for the original files)")
    ap.add_argument("--json")
    args = ap.parse_args()
    meta = read_metadata(args.model)
    decoded = DecodedSet.load(args.cache)
    val_idx = model_validation_split(meta, decoded)
    predictor = Predictor(args.model)
    config = PreprocessConfig.from_dict(meta["input"]["preprocess"])
    root = Path(args.root)
    originals = [decode_image(root / decoded.paths[i]) for i in val_idx]
    tumor = decoded.tumor[val_idx]
    renders = {
        "as-is": lambda im, t: im,
        "small-jpeg": lambda im, t: rerender(im, 256, 75) if t else im,
        "large-jpeg": lambda im, t: im if t else rerender(im, 512, 95),
        "tall": lambda im, t: im.crop((round(0.11 * im.width), 0, round(0.89 * im.width), im.height)) if t else im,
    }
    results = {}
    for name, render in renders.items():
        x = np.stack([preprocess(render(im, t), config) for im, t in zip(originals, tumor)])
        p, _, _ = predictor.predict_arrays(x)
        m = binary_metrics(tumor, p, predictor.threshold)
        results[name] = {k: round(float(m[k]), 4) for k in ("sensitivity", "specificity", "roc_auc")}
        # Log-odds, not probabilities: near 0 and 1 a probability hides how far a score moved.
        log_odds = np.log(np.clip(p, 1e-7, 1)) - np.log(np.clip(1 - p, 1e-7, 1))
        results[name]["median_log_odds_tumors"] = round(float(np.median(log_odds[tumor == 1])), 2)
        results[name]["median_log_odds_normals"] = round(float(np.median(log_odds[tumor == 0])), 2)
        results[name]["second_lowest_log_odds_tumors"] = round(float(np.sort(log_odds[tumor == 1])[1]), 2)
        print(name, results[name], flush=True)
    out = {"model": Path(args.model).name, "validation_images": len(val_idx), "tumors": int(tumor.sum()),
           "results": results}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
