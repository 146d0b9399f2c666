"""Two recipes averaged, judged before any ensemble file is built (session 22).

    python experiments/ensemble_holdout.py --held-out ../shared/data/br35h --first runs/A \
        --second runs/B [runs/B2 ...] --cv runs/CV_A runs/CV_B

`ensemble.py` averages its members' softmax probabilities, so the ensemble's P(tumor) is the mean of theirs. This
scores it from what the runs already hold:
- held out: each pair (first, second) on every image of the source both were trained without (`--held-out`), at
  0.5, with each member alone beside it (`Predictor` on the runs' weights, their guard not involved);
- in distribution: the per-image mean of two cross-validations' out-of-fold probabilities (`--cv`, run with the
  same grouped folds: checked), at the threshold keeping out-of-fold specificity 0.95, per source
  (`metrics.per_source_metrics`), as `braintriage threshold` would set it for the ensemble.
The rule it answers is in docs/model.md (session 22); Testing is never read here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from braintriage.datasets import load_dataset
from braintriage.inference import Predictor
from braintriage.metrics import binary_metrics, describe_per_source, per_source_metrics, threshold_for_specificity
from braintriage.operating_point import out_of_fold_scores, out_of_fold_sources, read_out_of_fold


def held_out_scores(run: Path, paths: list[str]) -> np.ndarray:
    predictions = Predictor(run / "model.safetensors").predict_files(paths)
    if any(p.error for p in predictions):
        raise SystemExit(f"{run}: {sum(bool(p.error) for p in predictions)} held-out images could not be scored")
    return np.array([p.tumor_probability for p in predictions])


def describe(name: str, y: np.ndarray, p: np.ndarray) -> dict:
    m = binary_metrics(y, p, 0.5)
    print(f"  {name}: sensitivity {m['sensitivity']:.3f}, specificity {m['specificity']:.3f}, "
          f"ROC-AUC {m['roc_auc']:.3f}")
    return m


def held_out(source: Path, first: Path, seconds: list[Path]) -> None:
    samples = load_dataset(source).samples
    paths, y = [str(s.path) for s in samples], np.array([s.tumor for s in samples])
    print(f"held out: {source} ({len(y)} images, {int(y.sum())} tumors), at 0.5")
    p_first = held_out_scores(first, paths)
    pairs = []
    for second in seconds:
        p_second = held_out_scores(second, paths)
        print(f"{first.name} + {second.name}")
        describe("first alone", y, p_first)
        describe("second alone", y, p_second)
        pairs.append(describe("mean of the two", y, (p_first + p_second) / 2))
    print("pairs' mean: " + ", ".join(f"{k} {np.mean([m[k] for m in pairs]):.3f}"
                                      for k in ("sensitivity", "specificity", "roc_auc")))


def out_of_fold(cv_first: Path, cv_second: Path) -> None:
    (_, rows_a), (_, rows_b) = read_out_of_fold(cv_first), read_out_of_fold(cv_second)
    b_by_path = {r["path"]: r for r in rows_b}
    if len(rows_a) != len(rows_b) or any(b_by_path[r["path"]]["fold"] != r["fold"] for r in rows_a):
        raise SystemExit("the two cross-validations did not use the same images in the same folds")
    _, y, p_first = out_of_fold_scores(rows_a)
    source = out_of_fold_sources(rows_a)
    p_second = np.array([float(b_by_path[r["path"]]["p_tumor"]) for r in rows_a])
    for name, p_member in [(cv_first.name, p_first), (cv_second.name, p_second)]:
        print(f"out of fold, {name}: threshold {threshold_for_specificity(y, p_member, 0.95):.3f}")
    p = (p_first + p_second) / 2
    threshold = threshold_for_specificity(y, p, 0.95)
    m = binary_metrics(y, p, threshold)
    print(f"out of fold, mean of the two: threshold {threshold:.3f}, specificity {m['specificity']:.3f}, "
          f"sensitivity {m['sensitivity']:.3f}")
    for line in describe_per_source(per_source_metrics(y, p, source, threshold)):
        print(f"  {line}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--held-out", type=Path, help="the source both members were trained without")
    parser.add_argument("--first", type=Path, help="run folder of the first member (its guard is the ensemble's)")
    parser.add_argument("--second", type=Path, nargs="+", default=[], help="run folders of second members")
    parser.add_argument("--cv", type=Path, nargs=2, help="the two recipes' cross-validation run folders")
    args = parser.parse_args()
    if args.held_out:
        held_out(args.held_out, args.first, args.second)
    if args.cv:
        out_of_fold(*args.cv)
