"""What the clinic app would show for a model's own validation split (the grouped split its training held out), with
and without the familiarity rule: the in-distribution cost of a reading rule, without `Testing`.

    python experiments/validation_verdicts.py MODEL DATA [DATA ...] [--val-fraction 0.15] [--seed 0]

DATA are the sources MODEL trained on, in its order (a leave-source-out run's model: without the held-out one);
`--val-fraction` and `--seed` as in its training, so `splits.grouped_split` gives the same validation split. Each
image is scored through `Predictor` (as `evaluate` scores a decoded cache) and read with MODEL's threshold and band,
then again with the familiarity rule (verdicts.is_familiar) at MODEL's guard's `familiar_below`. The percentile that
sets `familiar_below` is of this same split, so about one image in twenty lies above it by construction; what this
counts is how many of the normals shown green lose it.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from braintriage import verdicts
from braintriage.inference import Predictor
from braintriage.scans import ScanItem, Slice
from braintriage.splits import grouped_split
from braintriage.train import TrainConfig, load_training_data


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("data", nargs="+")
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    predictor = Predictor(args.model)
    familiar_below = (predictor.ood or {}).get("familiar_below")
    if familiar_below is None:
        raise SystemExit(f"{args.model}: its guard has no familiar_below (braintriage calibrate-ood --familiar-only)")
    decoded = load_training_data(TrainConfig(data=args.data, image_size=predictor.preprocess.size), log=print,
                                 preprocess=predictor.preprocess)
    _, val_idx = grouped_split(decoded, args.val_fraction, args.seed)
    items = [ScanItem(str(decoded.paths[i]), [Slice("1", lambda a=decoded.images[i]: Image.fromarray(a))])
             for i in val_idx]
    results = predictor.predict_items(items)
    p = np.array([r.tumor_probability for r in results])
    flagged = np.array([not r.reliable for r in results])
    ratios = np.array([r.guard_ratio for r in results], dtype=float)
    tumor = decoded.tumor[val_idx] == 1
    plain = np.array(verdicts.of_scores(p, flagged, predictor.band))
    familiar = np.array(verdicts.of_scores(p, flagged, predictor.band, ratios, familiar_below))
    print(f"{args.model}: validation split of {len(val_idx)} ({tumor.sum()} tumors), threshold "
          f"{predictor.threshold:.3f}, band [{predictor.band[0]:.4f}, {predictor.band[1]:.4f}), familiar_below "
          f"{familiar_below:.3f}; above it: {(ratios > familiar_below).sum()} images")
    for title, outcomes in (("without the familiarity rule", plain), ("with it", familiar)):
        print(title)
        for label, which in (("tumors", tumor), ("normals", ~tumor)):
            counts = Counter(outcomes[which].tolist())
            print(f"  {label} ({which.sum()}): " + ", ".join(f"{name} {counts.get(name, 0)}"
                                                           for name in verdicts.WORKLIST_ORDER))
    green = (plain == verdicts.NO_TUMOR_DETECTED) & ~tumor
    lost = green & (familiar != verdicts.NO_TUMOR_DETECTED)
    print(f"normals shown green that lose it: {lost.sum()} of {green.sum()}"
          + (f" ({lost.sum() / green.sum():.3f})" if green.any() else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
