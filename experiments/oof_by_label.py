"""A finished cross-validation's out-of-fold scores, grouped by a label of the images: which kind of image sets the
threshold the CV chooses (out-of-fold specificity 0.95 over all normals).

    python experiments/oof_by_label.py experiments/cv/CV_NAME --labels experiments/labels/seed-normals-by-eye.csv --column plane

LABELS is a CSV with a path column (paths as the CV's rows name them) and the label column; images it does not list
are left out. Per label value: how many, how many score 0.5 or more, how many the CV's own threshold or more, and
the median P(tumor).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from braintriage.operating_point import out_of_fold_rows, out_of_fold_scores, threshold_and_band

SPECIFICITY = 0.95  # the bundled model's rule (train --folds, then braintriage threshold --cv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cv", type=Path, help="a finished CV: its run folder, or its kept folds, experiments/cv/NAME")
    parser.add_argument("--labels", type=Path, required=True, help="CSV with path and the label column")
    parser.add_argument("--column", required=True, help="the label column to group by")
    args = parser.parse_args()
    rows = out_of_fold_rows(args.cv)
    _, y, p = out_of_fold_scores(rows)
    threshold, _ = threshold_and_band(y, p, SPECIFICITY)
    with open(args.labels, newline="") as f:
        label_of = {row["path"]: row[args.column] for row in csv.DictReader(f)}
    labels = np.array([label_of.get(row["path"], "") for row in rows])
    listed = labels != ""
    print(f"{args.cv.name}: threshold {threshold:.3f} (out-of-fold specificity {SPECIFICITY} over all "
          f"{int((y == 0).sum())} normals); {int(listed.sum())} of {len(rows)} images labelled by {args.labels.name}")
    print(f"{args.column:>12}  {'label':>5}  {'images':>6}  {'>= 0.5':>6}  {'>= thr':>6}  {'median P':>8}")
    for value in sorted(set(labels[listed].tolist())):
        for tumor in (0, 1):
            group = (labels == value) & (y == tumor)
            if group.any():
                print(f"{value:>12}  {'tumor' if tumor else 'none':>5}  {int(group.sum()):>6}  "
                      f"{int((p[group] >= 0.5).sum()):>6}  {int((p[group] >= threshold).sum()):>6}  "
                      f"{np.median(p[group]):>8.3f}")


if __name__ == "__main__":
    main()
