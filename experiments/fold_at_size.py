"""A kept fold model's out-of-fold images scored again at other input sizes, beside recipes' kept folds.

    python experiments/fold_at_size.py FOLD_MODEL --sizes 200 160 [--resample bicubic] [--compare FOLDS ...]
        [--data ../shared/data]

FOLD_MODEL is a fold's model file (`train --folds ... --keep-fold-models`: RUN_DIR/folds/fold-K.safetensors), with
its fold-K.json beside it (the out-of-fold rows written in training). Each size runs a copy of the model whose
metadata asks for that input size (and with `--resample`, that resampling filter) through `Predictor` (as
`predict` would run it); each FOLDS folder (kept folds of
another recipe on the same images, as in experiments/cv/NAME) adds that recipe's own fold-K rows. For every column:
ROC-AUC, the threshold for specificity 0.95 over this fold's normals (`metrics.threshold_for_specificity`, the
rule cv.json uses over all folds), sensitivity there, overall and per source, and ROC-AUC within the sources that
have normals. One fold is a pilot, not a cross-validation: it says whether a whole CV is worth running.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cv_difference import fold_rows, image_file, source_of  # noqa: E402

from braintriage.inference import Predictor  # noqa: E402
from braintriage.metrics import threshold_for_specificity  # noqa: E402
from braintriage.modelfile import read_metadata, update_metadata  # noqa: E402


def at_size(model: Path, size: int, files: list[Path], resample: str | None = None) -> np.ndarray:
    """P(tumor) of each file from `model` run at `size` pixels (a copy with that input size in its metadata, and
    `resample` as its resizing filter if given)."""
    meta = read_metadata(model)
    preprocess = {**meta["input"]["preprocess"], "size": size, **({"resample": resample} if resample else {})}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / f"at-{size}{model.suffix}"
        update_metadata(model, copy, {"input": {**meta["input"], "preprocess": preprocess}})
        results = Predictor(copy).predict_files([str(f) for f in files])
    failed = [r.path for r in results if r.tumor_probability is None]
    if failed:
        sys.exit(f"{len(failed)} images could not be scored, e.g. {failed[0]}")
    return np.array([r.tumor_probability for r in results])


def summary_line(name: str, p: np.ndarray, tumor: np.ndarray, sources: np.ndarray) -> str:
    threshold = threshold_for_specificity(tumor, p, 0.95)
    line = f"{name:34s} ROC-AUC {roc_auc_score(tumor, p):.4f}  threshold {threshold:.3f}  " \
           f"sensitivity {np.mean(p[tumor == 1] >= threshold):.3f}"
    for source in sorted(set(sources)):
        tumors = (sources == source) & (tumor == 1)
        line += f"  {source} {np.mean(p[tumors] >= threshold):.3f} ({tumors.sum()})"
    for source in sorted(set(sources[tumor == 0])):
        mine = sources == source
        line += f"  ROC-AUC {source} {roc_auc_score(tumor[mine], p[mine]):.4f}"
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fold_model", type=Path)
    ap.add_argument("--sizes", type=int, nargs="+", required=True)
    ap.add_argument("--resample", choices=("bilinear", "bicubic"),
                    help="resize with this filter (default: the model's own)")
    ap.add_argument("--compare", type=Path, nargs="*", default=[], help="kept folds of other recipes")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = ap.parse_args()
    rows = fold_rows(args.fold_model.with_suffix(".json"))
    paths = [r["path"] for r in rows]
    files = [image_file(args.data, p) for p in paths]
    if None in files:
        sys.exit(f"not found under {args.data}: {paths[files.index(None)]}")
    tumor, sources = np.array([r["tumor"] for r in rows]), np.array([source_of(p) for p in paths])
    print(f"{args.fold_model}: {len(rows)} out-of-fold images, {int(tumor.sum())} tumors")
    print(summary_line("as scored in training", np.array([r["p_tumor"] for r in rows]), tumor, sources))
    for size in args.sizes:
        name = f"run at {size} px" + (f", {args.resample}" if args.resample else "")
        print(summary_line(name, at_size(args.fold_model, size, files, args.resample), tumor, sources))
    fold_name = args.fold_model.with_suffix(".json").name
    for folder in args.compare:
        kept = next((f for f in (folder / fold_name, folder / (fold_name + ".gz")) if f.is_file()), None)
        other = {r["path"]: r["p_tumor"] for r in fold_rows(kept)} if kept else {}
        if set(other) != set(paths):
            sys.exit(f"{folder}: no {fold_name}(.gz) over the same images")
        print(summary_line(folder.name[:34], np.array([other[p] for p in paths]), tumor, sources))


if __name__ == "__main__":
    main()
