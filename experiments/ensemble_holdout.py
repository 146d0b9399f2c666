"""Two recipes averaged, judged before any ensemble file is built (session 22).

    python experiments/ensemble_holdout.py --held-out ../shared/data/br35h --first runs/A \
        --second runs/B [runs/B2 ...] --cv runs/CV_A runs/CV_B

`ensemble.py` averages its members' softmax probabilities, so the ensemble's P(tumor) is the mean of theirs. This
scores it from what the runs already hold:
- held out: each pair (first, second) on every image of the source both were trained without (`--held-out`), at
  0.5, with each member alone beside it (`Predictor` on the runs' weights, their guard not involved);
- in distribution: the per-image mean of the cross-validations' out-of-fold probabilities (`--cv`, run folders or
  kept folds; an averaged image's score is out of fold whether or not they share their folds), at the threshold
  keeping out-of-fold specificity 0.95, per source (`metrics.per_source_metrics`), as `braintriage threshold`
  would set it for the ensemble.
The rule it answers is in docs/model.md (session 22); Testing is never read here.

    python experiments/ensemble_holdout.py --cv experiments/cv/CV_A experiments/cv/CV_B \
        --scores experiments/holdout/A_RUN_s0/scores.csv.gz experiments/holdout/B_RUN_s0/scores.csv.gz \
        [--scores A_RUN_s1/... B_RUN_s1/... ...]

reads the same mean from what experiments/run.py kept, for runs whose models are gone with their machine (session
50): each `--scores` is one seed's kept held-out scores, one file per recipe in the order of `--cv`, and the mean is
read at the threshold the mean of the CVs' out-of-fold scores sets (CVs without the held-out source, so chosen
without it: issue 21's Br35H target as written), each member alone at its own CV's threshold beside it. It counts
P(tumor) against the threshold and the band's low edge only (no guard).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from braintriage.datasets import load_dataset
from braintriage.evaluate import read_held_out_scores
from braintriage.inference import Predictor
from braintriage.metrics import binary_metrics, describe_per_source, per_source_metrics, threshold_for_specificity
from braintriage.operating_point import out_of_fold_rows, out_of_fold_sources, threshold_and_band


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


def scored_out_of_fold(cv: Path) -> dict[str, tuple[int, float]]:
    """One CV's out-of-fold (label, P(tumor)) per image path, read once."""
    return {r["path"]: (int(r["tumor"]), float(r["p_tumor"])) for r in out_of_fold_rows(cv)}


def mean_out_of_fold(scored: list[dict[str, tuple[int, float]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each out-of-fold image's path, label (1 = tumor) and the mean of the CVs' P(tumor) for it (`scored`: one
    `scored_out_of_fold` per CV). An averaged image's score is out of fold whether or not the CVs share their
    folds."""
    paths = sorted(scored[0])
    if any(sorted(s) != paths for s in scored[1:]):
        raise SystemExit("the cross-validations scored different images: they are not of the same sources")
    return (np.array(paths), np.array([scored[0][p][0] for p in paths]),
            np.mean([[s[p][1] for p in paths] for s in scored], axis=0))


def out_of_fold(cvs: list[Path]) -> None:
    """Each CV's threshold, and the mean's, with the mean read per source at its threshold."""
    scored = [scored_out_of_fold(cv) for cv in cvs]
    for cv, member in zip(cvs, scored):
        _, y, p_member = mean_out_of_fold([member])
        print(f"out of fold, {cv.name}: threshold {threshold_for_specificity(y, p_member, 0.95):.3f}")
    paths, y, p = mean_out_of_fold(scored)
    threshold = threshold_for_specificity(y, p, 0.95)
    m = binary_metrics(y, p, threshold)
    count = "two" if len(cvs) == 2 else len(cvs)
    print(f"out of fold, mean of the {count}: threshold {threshold:.3f}, specificity {m['specificity']:.3f}, "
          f"sensitivity {m['sensitivity']:.3f}")
    source = out_of_fold_sources([{"path": path} for path in paths])
    for line in describe_per_source(per_source_metrics(y, p, source, threshold)):
        print(f"  {line}")


def mean_held_out(files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Each held-out image's label (True = tumor) and the mean of the runs' P(tumor) for it."""
    kept = [read_held_out_scores(f) for f in files]
    order = [np.argsort(k["path"]) for k in kept]
    paths = [np.asarray(k["path"])[o] for k, o in zip(kept, order)]
    if any(not np.array_equal(p, paths[0]) for p in paths[1:]):
        raise SystemExit(f"{', '.join(map(str, files))}: the runs scored different images")
    return (np.asarray(kept[0]["tumor"])[order[0]].astype(bool),
            np.mean([np.asarray(k["p_tumor"])[o] for k, o in zip(kept, order)], axis=0))


def reading(tumor: np.ndarray, p: np.ndarray, threshold: float, low: float) -> dict:
    """Tumors found and normals cleared at the threshold; tumors and normals under the band's low edge."""
    return {"found": int((p[tumor] >= threshold).sum()), "tumors": int(tumor.sum()),
            "cleared": int((p[~tumor] < threshold).sum()), "normals": int((~tumor).sum()),
            "tumors_under": int((p[tumor] < low).sum()), "normals_under": int((p[~tumor] < low).sum())}


def print_kept_readings(title: str, rules: tuple[float, dict], seeds: list[tuple[np.ndarray, np.ndarray]]) -> None:
    threshold, band = rules
    rows = [reading(t, p, threshold, band["low"]) for t, p in seeds]
    total = {k: sum(r[k] for r in rows) for k in rows[0]}
    per_seed = " / ".join(f"{r['found'] / r['tumors']:.3f}" for r in rows)
    print(f"{title}: threshold {threshold:.3f}, band [{band['low']:.3f}, {band['high']:.3f})\n"
          f"  sensitivity {per_seed}; pooled {total['found']} of {total['tumors']} "
          f"({total['found'] / total['tumors']:.3f}), specificity {total['cleared']} of {total['normals']}; under the "
          f"band {total['tumors_under']} tumors and {total['normals_under']} normals")


def kept_scores(cvs: list[Path], scores: list[list[Path]]) -> None:
    """Each member alone at its own CV's threshold, then their mean at the threshold of the mean of the CVs."""
    scored = [scored_out_of_fold(cv) for cv in cvs]
    for i, (cv, member) in enumerate(zip(cvs, scored)):
        _, y, p = mean_out_of_fold([member])
        print_kept_readings(f"{cv.name} alone", threshold_and_band(y, p, 0.95),
                            [mean_held_out([files[i]]) for files in scores])
    _, y, p = mean_out_of_fold(scored)
    rules = threshold_and_band(y, p, 0.95)
    print(f"out of fold, the mean: sensitivity {(p[y == 1] >= rules[0]).mean():.3f}")
    print_kept_readings("the mean", rules, [mean_held_out(files) for files in scores])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--held-out", type=Path, help="the source both members were trained without")
    parser.add_argument("--first", type=Path, help="run folder of the first member (its guard is the ensemble's)")
    parser.add_argument("--second", type=Path, nargs="+", default=[], help="run folders of second members")
    parser.add_argument("--cv", type=Path, nargs="+",
                        help="the recipes' cross-validations (run folders; with --scores, also their kept folds)")
    parser.add_argument("--scores", type=Path, nargs="+", action="append",
                        help="one seed's kept held-out scores, one per recipe in --cv's order (repeat per seed)")
    args = parser.parse_args()
    if args.scores:
        if not args.cv or len(args.cv) < 2 or any(len(files) != len(args.cv) for files in args.scores):
            parser.error("--scores needs two or more --cv, and one file per --cv in each --scores")
        kept_scores(args.cv, args.scores)
        raise SystemExit(0)
    if args.held_out:
        held_out(args.held_out, args.first, args.second)
    if args.cv:
        out_of_fold(args.cv)
