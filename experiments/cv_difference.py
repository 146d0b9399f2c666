"""Which tumors one cross-validation finds out of fold and another misses, each at its own shipping threshold.

    python experiments/cv_difference.py FOLDS_A FOLDS_B [--sheet normals.png] [--data ../shared/data]

FOLDS_A and FOLDS_B are folders of finished folds (`fold-K.json` or `fold-K.json.gz`, as `train --folds` keeps
them in RUN_DIR/folds and `experiments/run.py` in experiments/cv/NAME) of two recipes on the same images. For
each, the threshold for out-of-fold specificity 0.95 over all normals (`metrics.threshold_for_specificity`, as
cv.json has it); then the tumors B finds and A misses, by source and type; how many of A's misses score between
0.5 and A's threshold; and the sources of the highest-scoring normals, the 5% that set each threshold, with A's
ten highest by path (to look at: a normal that scores like a tumor may be labelled wrong). It tells a recipe that
loses one kind of tumor from one whose normals and tumors overlap more. `--sheet PNG` draws those ten as one
picture with their paths and scores, for a clinician to look at (the files are found under `--data`).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from braintriage.metrics import threshold_for_specificity


def fold_rows(path: Path) -> list[dict]:
    """The out-of-fold rows of one kept fold (fold-K.json, or fold-K.json.gz as experiments/cv keeps them)."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rt") as f:
        return json.load(f)["oof_rows"]


def out_of_fold(folder: Path) -> dict[str, dict]:
    """Every image's out-of-fold row, by path."""
    rows = {}
    for path in sorted(folder.glob("fold-*.json*")):
        rows.update({r["path"]: r for r in fold_rows(path)})
    if not rows:
        sys.exit(f"{folder}: no fold-K.json(.gz) files")
    return rows


def source_of(path: str) -> str:
    """A multi-source run prefixes each path with its source folder (cache.from_sources)."""
    return path.split("/", 1)[0] if "/" in path else "?"


def image_file(data: Path, path: str) -> Path | None:
    """The file of an out-of-fold path: SOURCE/CLASS/NAME, under a seed-layout source's Training/ or not."""
    source, rest = path.split("/", 1) if "/" in path else ("", path)
    return next((f for f in (data / source / rest, data / source / "Training" / rest) if f.is_file()), None)


def contact_sheet(rows: list[tuple[float, float, str]], data: Path, output: Path, tile: int = 256) -> None:
    """The images side by side, five a row, each captioned with its scores in A and B and its path."""
    from PIL import Image, ImageDraw

    columns, caption = 5, 28
    sheet = Image.new("L", (columns * tile, -(-len(rows) // columns) * (tile + caption)), 0)
    draw = ImageDraw.Draw(sheet)
    for k, (p_a, p_b, path) in enumerate(rows):
        x, y = (k % columns) * tile, (k // columns) * (tile + caption)
        found = image_file(data, path)
        if found is not None:
            with Image.open(found) as im:
                im = im.convert("L")
                im.thumbnail((tile, tile))
                sheet.paste(im, (x + (tile - im.width) // 2, y + (tile - im.height) // 2))
        draw.text((x + 2, y + tile + 1), f"A {p_a:.3f}  B {p_b:.3f}", fill=255)
        draw.text((x + 2, y + tile + 14), path.split("/", 1)[-1][-40:], fill=255)
    sheet.save(output)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folds_a", type=Path)
    ap.add_argument("folds_b", type=Path)
    ap.add_argument("--sheet", type=Path, help="draw A's ten highest-scoring normals into this PNG")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"), help="where the sources' folders are")
    args = ap.parse_args()
    a, b = out_of_fold(args.folds_a), out_of_fold(args.folds_b)
    if set(a) != set(b):
        sys.exit("the two cross-validations held out different images")
    paths = sorted(a)
    y = np.array([int(a[p]["tumor"]) for p in paths])
    p_a, p_b = (np.array([float(rows[p]["p_tumor"]) for p in paths]) for rows in (a, b))
    sources = np.array([source_of(p) for p in paths])
    kinds = np.array([f"{source_of(p)} {a[p].get('tumor_type') or 'untyped'}" for p in paths])
    t_a, t_b = threshold_for_specificity(y, p_a, 0.95), threshold_for_specificity(y, p_b, 0.95)
    print(f"thresholds for out-of-fold specificity 0.95: A {t_a:.3f}, B {t_b:.3f}")
    for source in sorted(set(sources)):
        tumors, normals = (sources == source) & (y == 1), (sources == source) & (y == 0)
        line = f"  {source}: tumors found A {np.mean(p_a[tumors] >= t_a):.3f}, B {np.mean(p_b[tumors] >= t_b):.3f}"
        if normals.any():
            line += f"; normals cleared A {np.mean(p_a[normals] < t_a):.3f}, B {np.mean(p_b[normals] < t_b):.3f}"
        print(line + f" ({tumors.sum()} tumors, {normals.sum()} normals)")
    lost = (y == 1) & (p_a < t_a) & (p_b >= t_b)
    print(f"tumors B finds and A misses: {lost.sum()}: " +
          ", ".join(f"{kind} {n}" for kind, n in Counter(kinds[lost]).most_common()))
    missed = (y == 1) & (p_a < t_a)
    print(f"A misses {missed.sum()} tumors; {np.sum(missed & (p_a >= 0.5))} of them score between 0.5 and its "
          "threshold")
    top = round(0.05 * (y == 0).sum())
    for name, p in (("A", p_a), ("B", p_b)):
        highest = np.argsort(-np.where(y == 0, p, -1.0))[:top]
        print(f"{name}'s {top} highest-scoring normals by source: " +
              ", ".join(f"{s} {n}" for s, n in Counter(sources[highest]).most_common()))
    print("A's 10 highest-scoring normals (P in A, in B), to look at:")
    highest = [(p_a[i], p_b[i], paths[i]) for i in np.argsort(-np.where(y == 0, p_a, -1.0))[:10]]
    for score_a, score_b, path in highest:
        print(f"  {score_a:.3f} {score_b:.3f} {path}")
    if args.sheet:
        contact_sheet(highest, args.data, args.sheet)
        print(f"saved {args.sheet}")


if __name__ == "__main__":
    main()
