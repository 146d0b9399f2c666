"""What the clinic app would show for a model's own validation split (the grouped split its training held out), with
and without the familiarity rule: the in-distribution cost of that rule, without `Testing`.

    python experiments/validation_verdicts.py MODEL DATA [DATA ...] [--val-fraction 0.15] [--seed 0]
        [--familiar-percentile 95 ...] [--all-images] [--record-in RUN/holdout.json]

DATA are the sources MODEL trained on, in its order (a leave-source-out run's model: without the held-out one);
`--val-fraction` and `--seed` as in its training, so `splits.grouped_split` gives the same validation split. Each
image is scored through `Predictor` (`evaluate.score_decoded`, as `evaluate` scores a decoded cache) and read with MODEL's threshold and band,
then with the familiarity rule (verdicts.is_familiar) at each percentile given of the split's normals' guard scores
(ood.familiar_below, as `calibrate-ood --familiar-percentile` sets it): in sample, and out of sample by halves (the
normals in path order, alternately in one half or the other, each half read with the percentile of the other's).
It counts how many of the normals shown green lose it. `--all-images` also reads it at the 95th percentile of all
the split's images (rule A of config lso-br35h-lite0-160-familiar).

`--record-in` writes the normals' guard scores at ood.NORMAL_PERCENTILES into a leave-source-out run's holdout.json
as `guard_validation_normal_ratios` (what runs since session 40 record themselves), so its kept held-out scores can
be read with the rule after the model is gone (held_out_verdicts.py --familiar-percentile).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from braintriage import ood, verdicts
from braintriage.evaluate import score_decoded
from braintriage.inference import Predictor
from braintriage.splits import grouped_split
from braintriage.train import TrainConfig, load_training_data
from held_out_verdicts import print_counts  # experiments/, beside this script


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("data", nargs="+")
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--familiar-percentile", type=float, nargs="+", default=[ood.FAMILIAR_PERCENTILE])
    parser.add_argument("--all-images", action="store_true", help="also at the 95th percentile of all images")
    parser.add_argument("--record-in", type=Path, help="a leave-source-out run's holdout.json")
    args = parser.parse_args(argv)
    predictor = Predictor(args.model)
    decoded = load_training_data(TrainConfig(data=args.data, image_size=predictor.preprocess.size), log=print,
                                 preprocess=predictor.preprocess)
    _, val_idx = grouped_split(decoded, args.val_fraction, args.seed)
    scored = score_decoded(predictor, decoded.subset(val_idx), "the validation split")
    p = scored.p_tumor
    flagged = np.array([w is not None for w in scored.warnings])
    ratios = np.array(scored.guard_ratios, dtype=float)
    tumor = scored.tumor == 1
    plain = np.array(verdicts.of_scores(p, flagged, predictor.band))
    print(f"{args.model}: validation split of {len(val_idx)} ({tumor.sum()} tumors), threshold "
          f"{predictor.threshold:.3f}, band [{predictor.band[0]:.4f}, {predictor.band[1]:.4f})")
    print_counts("without the familiarity rule", plain, tumor)
    green = (plain == verdicts.NO_TUMOR_DETECTED) & ~tumor
    normals = np.flatnonzero(~tumor)
    normals = normals[np.argsort([scored.paths[k] for k in normals], kind="stable")]
    if args.all_images:
        below = ood.familiar_below(ratios)
        print_lost(f"all images' 95th percentile {below:.3f}, in sample: normals shown green that lose it", green,
                   green & (ratios > below))
    for percentile in args.familiar_percentile:
        below = ood.familiar_below(ratios[normals], percentile)
        print(f"the {percentile:g}th percentile of the {len(normals)} normals: {below:.3f}")
        print_counts("  with the rule there, in sample", np.array(
            verdicts.of_scores(p, flagged, predictor.band, ratios, below)), tumor)
        print_lost("  in sample: normals shown green that lose it", green, green & (ratios > below))
        halves = [normals[0::2], normals[1::2]]
        lost = np.zeros(len(p), dtype=bool)
        for k, half in enumerate(halves):
            in_half = np.isin(np.arange(len(p)), half)
            lost |= in_half & green & (ratios > ood.familiar_below(ratios[halves[1 - k]], percentile))
        print_lost("  out of sample (each half at the other's): normals shown green that lose it", green, lost)
    if args.record_in:
        row = json.loads(args.record_in.read_text())
        row["guard_validation_normal_ratios"] = {str(q): ood.familiar_below(ratios[normals], q)
                                                 for q in ood.NORMAL_PERCENTILES}
        args.record_in.write_text(json.dumps(row, indent=2))
        print(f"recorded the normals' guard scores at {ood.NORMAL_PERCENTILES} in {args.record_in}")
    return 0


def print_lost(title: str, green: np.ndarray, lost: np.ndarray) -> None:
    print(f"{title}: {lost.sum()} of {green.sum()}" + (f" ({lost.sum() / green.sum():.3f})" if green.any() else ""))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
