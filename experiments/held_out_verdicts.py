"""What the clinic app would show for a source a model never trained on: its four verdicts, counted.

    python experiments/held_out_verdicts.py MODEL (--rules-from FILE | --cv RUN) [--source ../shared/data/br35h]
    python experiments/held_out_verdicts.py --scores experiments/holdout/RUN/scores.csv.gz (--rules-from ... | --cv ...)
        [--normals-green K ...] [--missed-by SCORES ...]

MODEL is a leave-source-out run's model file (runs/lso-.../model.safetensors). The held-out rules read P(tumor) at
0.5; a clinician reads a verdict instead (verdicts.py): "tumor suspected" at or above the uncertain band,
"uncertain" inside it, "no tumor detected" (green) below it, "cannot assess" where the guard calls the input unlike
a brain MRI. So MODEL is given the reading rules of the recipe's shipped model and scored through `Predictor`, as
`predict` and the web app would score it:

- `--rules-from FILE`: the threshold and band of a model file (the bundled asset, or a candidate's export);
- `--cv RUN`: those a cross-validation of the recipe sets (`braintriage threshold --cv`: out-of-fold specificity
  0.95, the band by `operating_point.uncertain_band`), for a recipe that has no exported model; RUN is the CV's run
  directory, or the folds experiments/run.py kept of it (experiments/cv/NAME).

`--scores` reads the held-out images' P(tumor) and guard flags that experiments/run.py kept from the run's own
held-out evaluation (the same `Predictor`), instead of scoring the source again: the same verdicts, for a run whose
model is gone with its machine. Where the run also kept each image's guard score (since session 40: the scores'
guard_ratio column), `--familiar-percentile P` counts the verdicts a second time with the familiarity rule
(verdicts.is_familiar): a score under the band on a scan whose guard score is above that of P% of the run's own
validation normals (holdout.json's guard_validation_normal_ratios) reads "uncertain"; `--familiar-below X` sets that
guard score directly.

Rules read off the recipe's all-sources CV (`cv5-all-...`) include the held-out source's own images in their
out-of-fold scores (scored by fold models that trained on its other images): they are the rules a shipped model of
the recipe reads with, not rules chosen without the source. Rules chosen without it come from a CV that leaves the
source out of every fold (since session 48 `cv5-seed-figshare-...`, the seed set and figshare only): issue 21's
Br35H target is read with those. The source is any dataset layout `braintriage train` reads
(`datasets.load_dataset`; Br35H's is a yes/no folder pair).

Where the source has tumors and normals it also prints the band's low edge that the same rule (`uncertain_band`:
tumors and normals weighted equally, the tumor rate at a score at most 0.1 below it, and at most 80% of the normals
below it since session 39) reads off the held-out scores
themselves: under it "no tumor detected" would be as trustworthy on this unseen source as the shipped band makes it
in distribution. An edge far under the shipped one means green verdicts on such a source hide tumors.

It also prints the held-out sensitivity and specificity at 0.5, where the leave-source-out rules read them (a run's
holdout.json, and its results row, is at the threshold the run stored, under 0.5 when fewer than 95% of its
validation tumors reached 0.5), and at the rules' own threshold.

`--normals-green K` (with MODEL or --scores) also counts the tumors shown green where the band's low edge is put
so that K of the source's normals are green, each under the guard as in the verdicts: two recipes compared at the
same cost in normals, since one recipe's scores can sit higher than another's on an unseen source (fewer tumors and
fewer normals under the same edge). That edge is read off the held-out source itself: a description, never a
rule a shipped model could use.

`--missed-by SCORES ...` (with --scores) counts the tumors that all those other runs' kept scores put under the
rules' threshold, and how many of them this run finds: whether a recipe reaches the tumors another misses on
every seed, or only moves the ones near the threshold (session 49).

    python experiments/held_out_verdicts.py --cv experiments/cv/NAME --out-of-fold

counts the same verdicts for the CV's own out-of-fold scores, per source and in all: what the rules show in
distribution, where every source was in training. Without a guard; and where the CV kept each fold's guard outputs
(`train --folds K --fold-guards`, since session 42) again with each fold's guard, and with `--familiar-percentile
P` (80, 90, 95 or 99) with the familiarity rule too: its cost in distribution over all the normals.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from braintriage import verdicts
from braintriage.datasets import load_dataset
from braintriage.evaluate import read_held_out_scores
from braintriage.inference import Predictor
from braintriage.metrics import binary_metrics
from braintriage.modelfile import ModelFileError, read_metadata, update_metadata
from braintriage.operating_point import (kept_folds, out_of_fold_rows, out_of_fold_scores, out_of_fold_sources,
                                         threshold_and_band, uncertain_band)

RULE_KEYS = ("threshold", "uncertain_band")


def out_of_fold_folds(run: Path) -> list[dict]:
    """A finished cross-validation's fold records (cv.json's per_fold, or each kept fold's)."""
    if (run / "cv.json").exists():
        return json.loads((run / "cv.json").read_text())["per_fold"]
    return [record["fold"] for record in kept_folds(run)]


def has_guard_scores(run: Path) -> bool:
    """Whether the CV kept each held-out image's guard outputs (`train --folds K --fold-guards`; an architecture
    without pooled features kept none)."""
    return all(fold.get("guard_validation_normal_ratios") for fold in out_of_fold_folds(run))


def out_of_fold_verdicts(run: Path, rules: dict, guard: bool = False, familiar_percentile: float | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each out-of-fold image's verdict under `rules`, whether it is a tumor, its source. Without `guard` no image
    is flagged; with it (a CV run with --fold-guards) each image's own fold guard decides, and with
    `familiar_percentile` the familiarity rule too (`familiar_below_per_row`)."""
    rows = out_of_fold_rows(run)
    _, y, p = out_of_fold_scores(rows)
    band = (rules["uncertain_band"]["low"], rules["uncertain_band"]["high"])
    flagged, ratios, below = [False] * len(p), None, None
    if guard:
        flagged = [str(row["guard_flagged"]) in ("True", "1") for row in rows]
        ratios = [None if row.get("guard_ratio") in (None, "") else float(row["guard_ratio"]) for row in rows]
        if familiar_percentile is not None:
            below = familiar_below_per_row(run, rows, familiar_percentile)
    return np.array(verdicts.of_scores(p, flagged, band, ratios, below)), y == 1, out_of_fold_sources(rows)


def familiar_below_per_row(run: Path, rows: list[dict], percentile: float) -> list[float]:
    """For each out-of-fold row, the guard score of `percentile` of the normals of the half of its fold that
    thresholded the guard which scored it (crossval.add_guard_scores)."""
    normals = {int(f["fold"]): f["guard_validation_normal_ratios"] for f in out_of_fold_folds(run)}
    below = []
    for row in rows:
        kept = normals[int(row["fold"])][int(row["guard_half"])] or {}
        if f"{percentile:g}" not in kept:
            raise SystemExit(f"{run}: no validation normals' guard score at {percentile:g}% kept "
                             f"(kept: {', '.join(kept) or 'none'})")
        below.append(kept[f"{percentile:g}"])
    return below


def rules_from_cv(run: Path, specificity: float = 0.95) -> dict:
    """The threshold and band `braintriage threshold --cv RUN` would write."""
    _, y, p = out_of_fold_scores(out_of_fold_rows(run))
    threshold, band = threshold_and_band(y, p, specificity)
    return {"threshold": threshold, "uncertain_band": band}


def verdicts_of(model: Path, rules: dict, files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Each file's verdict from MODEL read with `rules`, through the app's own inference path, and its P(tumor)
    (NaN where it got none)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / f"with-rules{model.suffix}"
        update_metadata(model, copy, rules)
        predictions = Predictor(copy).predict_files([str(f) for f in files])
    return (np.array([p.verdict for p in predictions]),
            np.array([np.nan if p.tumor_probability is None else p.tumor_probability for p in predictions]))


def verdicts_from_scores(scores: Path, rules: dict, familiar_below: float | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each kept held-out image's verdict under `rules` (verdicts.verdict, as `Predictor` gives a plain image's),
    its P(tumor), and whether it is a tumor; with `familiar_below`, by the familiarity rule too."""
    kept = read_held_out_scores(scores)
    band = (rules["uncertain_band"]["low"], rules["uncertain_band"]["high"])
    outcomes = np.array(verdicts.of_scores(kept["p_tumor"], kept["guard_flagged"], band, kept["guard_ratio"],
                                           familiar_below))
    return outcomes, kept["p_tumor"], kept["tumor"]


def kept_familiar_below(scores: Path, percentile: float) -> float:
    """The guard score of `percentile` of the held-out run's validation normals, as its holdout.json (beside the
    scores) kept them."""
    kept = json.loads((scores.parent / "holdout.json").read_text()).get("guard_validation_normal_ratios") or {}
    if f"{percentile:g}" not in kept:
        raise SystemExit(f"{scores.parent}: no validation normals' guard score at {percentile:g}% kept "
                         f"(experiments/validation_verdicts.py --record-in)")
    return kept[f"{percentile:g}"]


def green_at_equal_normals(outcomes: np.ndarray, p: np.ndarray, tumor: np.ndarray, normals_green: int
                           ) -> tuple[float, int, int]:
    """The low edge under which `normals_green` of the normals the guard lets through have P(tumor) (green: P at or
    under it), and how many normals and tumors are then green: more normals where several share the edge's score."""
    shown = ~np.isin(outcomes, (verdicts.CANNOT_ASSESS, verdicts.ERROR)) & np.isfinite(p)
    normals = np.sort(p[shown & ~tumor])
    if not 1 <= normals_green <= len(normals):
        raise SystemExit(f"--normals-green {normals_green}: {len(normals)} normals are shown a verdict")
    edge = normals[normals_green - 1]
    green = shown & (p <= edge)
    return float(edge), int((green & ~tumor).sum()), int((green & tumor).sum())


def found_of_missed_by_all(scores: Path, others: list[Path], threshold: float) -> tuple[int, int]:
    """Of the tumors that every run of `others` (kept scores of the same source) scores under `threshold`: how many
    there are, and how many the run of `scores` puts at or above it."""
    kept = read_held_out_scores(scores)
    missed = set(kept["path"][kept["tumor"]])
    for other in others:
        theirs = read_held_out_scores(other)
        missed &= set(theirs["path"][theirs["tumor"] & (theirs["p_tumor"] < threshold)])
    found = kept["tumor"] & (kept["p_tumor"] >= threshold) & np.isin(kept["path"], sorted(missed))
    return len(missed), int(found.sum())


def print_counts(title: str, outcomes: np.ndarray, tumor: np.ndarray) -> None:
    print(title)
    for label, which in (("tumors", tumor), ("normals", ~tumor)):
        if not which.any():  # figshare: tumors only
            continue
        counts = Counter(outcomes[which].tolist())
        print(f"  {label} ({which.sum()}): " + ", ".join(
            f"{name} {counts.get(name, 0)} ({counts.get(name, 0) / which.sum():.3f})"
            for name in verdicts.WORKLIST_ORDER))


def print_at(tumor: np.ndarray, p: np.ndarray, threshold: float, label: str) -> None:
    (tn, fp), (fn, tp) = binary_metrics(tumor, p, threshold)["confusion_matrix"]
    rates = [f"{name} {right} of {right + wrong} ({right / (right + wrong):.3f})"
             for name, right, wrong in (("sensitivity", tp, fn), ("specificity", tn, fp)) if right + wrong]
    print(f"  at {label}: " + ", ".join(rates))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, nargs="?", help="a leave-source-out run's model file")
    parser.add_argument("--scores", type=Path, help="instead of MODEL: a run's kept held-out scores (scores.csv.gz)")
    rules = parser.add_mutually_exclusive_group(required=True)
    rules.add_argument("--rules-from", type=Path, help="a model file whose threshold and band to read with")
    rules.add_argument("--cv", type=Path,
                       help="a cross-validation of the recipe (runs/cv5-... or its kept folds, experiments/cv/cv5-...)")
    parser.add_argument("--source", type=Path, default=Path("../shared/data/br35h"))
    familiar = parser.add_mutually_exclusive_group()
    familiar.add_argument("--familiar-percentile", type=float,
                          help="with --scores, or --out-of-fold of a CV with --fold-guards: also with the "
                               "familiarity rule at this percentile of the validation normals' guard scores")
    familiar.add_argument("--familiar-below", type=float, help="with --scores: ... at this guard score")
    parser.add_argument("--normals-green", type=int, nargs="+", metavar="K",
                        help="with MODEL or --scores: also the tumors green at the edge that leaves K normals green")
    parser.add_argument("--missed-by", type=Path, nargs="+", metavar="SCORES",
                        help="with --scores: of the tumors all these runs' kept scores put under the rules' "
                             "threshold, how many this run finds")
    parser.add_argument("--out-of-fold", action="store_true",
                        help="with --cv alone: the verdicts of the CV's own out-of-fold scores, per source")
    args = parser.parse_args(argv)
    if args.out_of_fold:
        if not args.cv or args.model or args.scores or args.normals_green:
            parser.error("--out-of-fold reads the CV given with --cv, without MODEL, --scores or --normals-green")
    elif (args.model is None) == (args.scores is None):
        parser.error("give MODEL or --scores, not both")
    if args.missed_by and not args.scores:
        parser.error("--missed-by compares kept scores: it needs --scores")
    if args.out_of_fold and args.familiar_percentile and not has_guard_scores(args.cv):
        parser.error(f"{args.cv} kept no guard scores (train --folds K --fold-guards)")
    return args


def print_out_of_fold(cv: Path, chosen: dict, familiar_percentile: float | None) -> None:
    """The verdicts of a CV's own out-of-fold scores, per source: without a guard, and with each fold's guard
    (and the familiarity rule) where the CV kept guard scores."""
    band = chosen["uncertain_band"]
    readings = [("no guard", False, None)]
    if has_guard_scores(cv):
        readings.append(("each fold's guard", True, None))
        if familiar_percentile:
            readings.append((f"each fold's guard and the familiarity rule at {familiar_percentile:g}%",
                             True, familiar_percentile))
    for title, guard, percentile in readings:
        outcomes, tumor, sources = out_of_fold_verdicts(cv, chosen, guard, percentile)
        print(f"{cv} out of fold, read with threshold {chosen['threshold']:.3f} and band "
              f"[{band['low']:.3f}, {band['high']:.3f}), {title}")
        for source in [*sorted(set(sources)), None]:
            which = np.ones(len(sources), bool) if source is None else sources == source
            print_counts(f"{source or 'all sources'}:", outcomes[which], tumor[which])


def print_held_out(args: argparse.Namespace, chosen: dict) -> None:
    """A held-out run's verdicts under the chosen rules, then its sensitivity at 0.5 and at the threshold, and
    the readings asked for (--normals-green, --missed-by)."""
    band = chosen["uncertain_band"]
    if args.scores:
        outcomes, p, tumor = verdicts_from_scores(args.scores, chosen)
    else:
        samples = load_dataset(args.source).samples
        files, tumor = [s.path for s in samples], np.array([s.tumor == 1 for s in samples])
        outcomes, p = verdicts_of(args.model, chosen, files)
    scored_what = f"{args.scores.parent.name} (kept scores)" if args.scores else f"{args.model} on {args.source.name}"
    print_counts(f"{scored_what}, read with threshold {chosen['threshold']:.3f} and band "
                 f"[{band['low']:.3f}, {band['high']:.3f}) from {args.cv or args.rules_from}", outcomes, tumor)
    familiar_below = args.familiar_below
    if args.scores and args.familiar_percentile:
        familiar_below = kept_familiar_below(args.scores, args.familiar_percentile)
    if familiar_below is not None and args.scores:
        print_counts(f"with the familiarity rule: shown clear only at a guard score up to {familiar_below:.3f} of "
                     "its alarm threshold", verdicts_from_scores(args.scores, chosen, familiar_below)[0], tumor)
    scored = np.isfinite(p)
    # The leave-source-out rules read P(tumor) at 0.5; a run's holdout.json is at the threshold it stored, which is
    # under 0.5 when fewer than 95% of its validation tumors reach 0.5.
    print_at(tumor[scored], p[scored], 0.5, "0.5")
    print_at(tumor[scored], p[scored], chosen["threshold"], f"the rules' threshold {chosen['threshold']:.3f}")
    if tumor[scored].any() and not tumor[scored].all():
        own = uncertain_band(tumor[scored].astype(int), p[scored], chosen["threshold"])
        print(f"  the low edge its band rule reads off these held-out scores: {own['low']:.4f} (the shipped "
              f"band's: {band['low']:.4f})")
    for k in args.normals_green or ():
        edge, normals, tumors = green_at_equal_normals(outcomes, p, tumor, k)
        print(f"  with the low edge at {edge:.4f}, read off this source: {normals} normals and {tumors} tumors green")
    if args.missed_by:
        missed, found = found_of_missed_by_all(args.scores, args.missed_by, chosen["threshold"])
        print(f"  of the {missed} tumors all {len(args.missed_by)} --missed-by runs score under "
              f"{chosen['threshold']:.3f}, this run finds {found}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    chosen = (rules_from_cv(args.cv) if args.cv else
              {k: v for k, v in read_metadata(args.rules_from).items() if k in RULE_KEYS})
    if args.out_of_fold:
        print_out_of_fold(args.cv, chosen, args.familiar_percentile)
    else:
        print_held_out(args, chosen)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except ModelFileError as e:  # a CV folder that holds no finished cross-validation
        sys.exit(f"error: {e}")
