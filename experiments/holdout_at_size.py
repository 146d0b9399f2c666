"""A leave-source-out model scored on its held-out source again at other input sizes.

    python experiments/holdout_at_size.py MODEL --sizes 200 160 [--resample bicubic] [--source ../shared/data/br35h]

MODEL is a leave-source-out run's model file (runs/lso-.../model.safetensors); each size runs a copy of it whose
metadata asks for that input size (and with `--resample`, that filter) through `Predictor`, as `predict` would
(fold_at_size.at_size). The source is any dataset layout `braintriage train` reads (`datasets.load_dataset`;
Br35H's is a yes/no folder pair). For each size: sensitivity at 0.5 (the held-out rule's threshold), the 10th
percentile of P(tumor) over its tumors (the tail that falls under 0.5), and where the source has normals, specificity
at 0.5 and ROC-AUC. The run's own holdout.json holds the same numbers at its own size through `evaluate` (with
bootstrap intervals).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from braintriage.datasets import load_dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fold_at_size import at_size  # noqa: E402


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", required=True)
    parser.add_argument("--resample", choices=["bilinear", "bicubic"])
    parser.add_argument("--source", type=Path, default=Path("../shared/data/br35h"))
    args = parser.parse_args(argv)
    samples = load_dataset(args.source).samples
    files, tumor = [s.path for s in samples], np.array([s.tumor for s in samples])
    print(f"{args.model}: {len(files)} images of {args.source.name} ({tumor.sum()} tumors)")
    for size in args.sizes:
        p = at_size(args.model, size, files, args.resample)
        label = f"{size} px" + (f" {args.resample}" if args.resample else "")
        normals = (f", specificity {np.mean(p[tumor == 0] < 0.5):.3f} at 0.5; ROC-AUC {roc_auc_score(tumor, p):.4f}"
                   if (tumor == 0).any() else " at 0.5")  # figshare: tumors only
        print(f"  at {label}: sensitivity {np.mean(p[tumor == 1] >= 0.5):.3f}{normals}; tumors' 10th percentile of "
              f"P(tumor) {np.percentile(p[tumor == 1], 10):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
