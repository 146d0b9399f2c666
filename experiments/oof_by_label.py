"""A finished cross-validation's out-of-fold scores, grouped by a label of the images: which kind of image sets the
threshold the CV chooses (out-of-fold specificity 0.95 over all normals).

    python experiments/oof_by_label.py experiments/cv/CV_NAME --labels experiments/labels/seed-normals-by-eye.csv --column plane
    python experiments/oof_by_label.py experiments/cv/CV_NAME --labels experiments/labels/seed-training-storage.csv \
        --column storage --by-type

LABELS is a CSV with a path column (paths as the CV's rows name them) and the label column; images it does not list
are left out. Per label value and class (tumor / none, or with --by-type each image's own type): how many, how many
score 0.5 or more, how many the CV's own threshold or more, the median P(tumor), and how many of those of known type
get their own of the four classes as the most likely (`operating_point.out_of_fold_type_right`).

seed-training-storage.csv: each seed `Training` image's storage, "512x512" (the figshare collection's format: every
glioma, most meningiomas and pituitary tumors) or "other" (the normals' collections; 143 meningiomas and 28 pituitary
tumors), read from the image files' sizes (session 58).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from braintriage.operating_point import out_of_fold_rows, out_of_fold_scores, out_of_fold_type_right, threshold_and_band

SPECIFICITY = 0.95  # the bundled model's rule (train --folds, then braintriage threshold --cv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cv", type=Path, help="a finished CV: its run folder, or its kept folds, experiments/cv/NAME")
    parser.add_argument("--labels", type=Path, required=True, help="CSV with path and the label column")
    parser.add_argument("--column", required=True, help="the label column to group by")
    parser.add_argument("--by-type", action="store_true", help="within a label value, by tumor type, not tumor / none")
    args = parser.parse_args()
    rows = out_of_fold_rows(args.cv)
    _, y, p = out_of_fold_scores(rows)
    type_right = out_of_fold_type_right(rows)
    if type_right is None:
        type_right = np.full(len(rows), np.nan)
    classes = (np.array([row.get("tumor_type") or "unknown" for row in rows]) if args.by_type
               else np.where(y == 1, "tumor", "none"))
    threshold, _ = threshold_and_band(y, p, SPECIFICITY)
    with open(args.labels, newline="") as f:
        label_of = {row["path"]: row[args.column] for row in csv.DictReader(f)}
    labels = np.array([label_of.get(row["path"], "") for row in rows])
    listed = labels != ""
    print(f"{args.cv.name}: threshold {threshold:.3f} (out-of-fold specificity {SPECIFICITY} over all "
          f"{int((y == 0).sum())} normals); {int(listed.sum())} of {len(rows)} images labelled by {args.labels.name}")
    print(f"{args.column:>12}  {'class':>10}  {'images':>6}  {'>= 0.5':>6}  {'>= thr':>6}  {'median P':>8}  "
          f"{'4-class right':>13}")
    for value in sorted(set(labels[listed].tolist())):
        for name in sorted(set(classes.tolist())):
            group = (labels == value) & (classes == name)
            if group.any():
                typed = type_right[group][~np.isnan(type_right[group])]
                right = f"{int(typed.sum())} of {len(typed)}" if len(typed) else ""
                print(f"{value:>12}  {name:>10}  {int(group.sum()):>6}  "
                      f"{int((p[group] >= 0.5).sum()):>6}  {int((p[group] >= threshold).sum()):>6}  "
                      f"{np.median(p[group]):>8.3f}  {right:>13}")


if __name__ == "__main__":
    main()
