"""Cross-validations side by side, per source, each at its own shipping threshold (out-of-fold specificity 0.95).

    python experiments/compare_cv.py runs/CV_RUN [runs/CV_RUN2 ...]
    python experiments/compare_cv.py --kept NAME [NAME2 ...]     # CVs part-way, from experiments/cv/NAME/

The pooled out-of-fold rule (sensitivity at specificity 0.95) can hold while a recipe loses one source's tumors:
a recipe whose normals score higher needs a higher threshold, and the tumors it pays with may all come from one
collection. This prints, for each run, every source's sensitivity and specificity at the run's threshold and the
ROC-AUC of its tumors against all normals (`metrics.per_source_metrics`, which `braintriage train --folds` writes
into cv.json since session 20). For runs made before that, the source is read from the out-of-fold paths, which
a multi-source run prefixes with it (`cache.from_sources`): the sources of the run's experiment config.

`--kept` reads CVs still running (or whose run directory is gone) from their kept folds, on the folds all of them
have kept, each at the threshold that keeps specificity >= 0.95 over those folds' normals: a preview, since a
config's rule reads all the folds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from braintriage.metrics import binary_metrics, describe_per_source, per_source_metrics, threshold_for_specificity
from braintriage.operating_point import (kept_folds, out_of_fold_scores, out_of_fold_sources, out_of_fold_type_right,
                                         read_out_of_fold)


def per_source(run: Path) -> tuple[float, dict]:
    cv, rows = read_out_of_fold(run)
    pooled = cv["pooled_out_of_fold"]
    threshold = pooled["at_specificity_0.95"]["threshold"]
    if "per_source_at_specificity_0.95" in pooled:
        return threshold, pooled["per_source_at_specificity_0.95"]
    config = json.loads((run / "config.json").read_text())
    names = {Path(s).name for s in config["sources"]}
    source = out_of_fold_sources(rows)
    if len(names) < 2 or not set(source.tolist()) <= names:
        raise SystemExit(f"{run}: cv.json has no per-source figures and its paths do not name its sources")
    _, y, p = out_of_fold_scores(rows)
    return threshold, per_source_metrics(y, p, source, threshold, out_of_fold_type_right(rows))


KEPT_CVS = Path(__file__).resolve().parent / "cv"


def kept_rows_by_fold(folder: Path) -> dict[int, list[dict]]:
    """A CV's kept folds (experiments/cv/NAME/, `operating_point.kept_folds`): out-of-fold rows by fold number."""
    folds = {record["fold"]["fold"]: record["oof_rows"] for record in kept_folds(folder)}
    if not folds:
        raise SystemExit(f"{folder} holds no kept folds")
    return folds


def part_way(names: list[str], kept_cvs: Path = KEPT_CVS) -> None:
    """Each CV on the folds all of them have kept, at its own threshold for specificity 0.95 over those folds."""
    by_name = {name: kept_rows_by_fold(kept_cvs / name) for name in names}
    common = sorted(set.intersection(*(set(folds) for folds in by_name.values())))
    if not common:
        raise SystemExit("these CVs have no kept fold in common")
    paths = {name: {r["path"] for k in common for r in folds[k]} for name, folds in by_name.items()}
    same = len({frozenset(p) for p in paths.values()}) == 1
    print(f"folds {', '.join(map(str, common))} of each; " + ("the same images in each" if same else
                                                              "NOT the same images: compare with care"))
    for name, folds in by_name.items():
        rows = [r for k in common for r in folds[k]]
        y, p = np.array([r["tumor"] for r in rows]), np.array([r["p_tumor"] for r in rows])
        threshold = threshold_for_specificity(y, p, 0.95)
        pooled = binary_metrics(y, p, threshold)
        print(f"{name} (threshold {threshold:.3f} over these folds: pooled sensitivity {pooled['sensitivity']:.3f} "
              f"of {pooled['n_tumor']} tumors, specificity {pooled['specificity']:.3f} of {pooled['n_no_tumor']} "
              "normals)")
        for line in describe_per_source(per_source_metrics(y, p, out_of_fold_sources(rows), threshold,
                                                           out_of_fold_type_right(rows))):
            print(f"  {line}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--kept"]:
        part_way(sys.argv[2:])
        sys.exit(0)
    for arg in sys.argv[1:]:
        threshold, figures = per_source(Path(arg))
        print(f"{arg} (threshold {threshold:.3f})")
        for line in describe_per_source(figures):
            print(f"  {line}")
