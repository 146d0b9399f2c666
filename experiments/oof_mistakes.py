"""An earlier cross-validation's out-of-fold mistakes as a `train --upweight` file ("just train twice", Liu et al.
2021): the images a recipe got wrong while they were held out, to count more when a recipe trains again.

    python experiments/oof_mistakes.py experiments/cv/CV_NAME --at 0.5 --weight 4 --out experiments/weights/NAME.csv

A mistake: a normal at P(tumor) >= AT, or a tumor under it. The file lists path,weight (paths as the CV's folds
name them, which is how `train` names its images) and, for a reader, each image's out-of-fold P(tumor) and label.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from braintriage.operating_point import out_of_fold_rows


def mistakes(rows: list[dict], at: float) -> list[dict]:
    return [row for row in rows if (float(row["p_tumor"]) >= at) != bool(int(row["tumor"]))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cv", type=Path, help="a finished CV: its run folder, or its kept folds, experiments/cv/NAME")
    parser.add_argument("--at", type=float, default=0.5, help="the P(tumor) edge a mistake is counted at")
    parser.add_argument("--weight", type=float, required=True, help="the loss-weight multiplier of each mistake")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = out_of_fold_rows(args.cv)
    wrong = sorted(mistakes(rows, args.at), key=lambda row: row["path"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "weight", "tumor", "p_tumor_out_of_fold"])
        writer.writerows([row["path"], args.weight, row["tumor"], f"{float(row['p_tumor']):.6f}"] for row in wrong)
    normals = sum(1 for row in wrong if not int(row["tumor"]))
    print(f"{len(wrong)} of {len(rows)} out-of-fold images wrong at {args.at:g}: {normals} normals at or above it, "
          f"{len(wrong) - normals} tumors under it -> {args.out}")


if __name__ == "__main__":
    main()
