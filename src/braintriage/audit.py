"""`braintriage audit`: what is in a dataset, and how much of its test split is a copy of its training split.

Counts per split and class, image sizes and modes, unreadable files, exact duplicates (same file bytes, or
the same decoded pixels), near-duplicates (64-bit pHash within NEAR_DUPLICATE_DISTANCE bits), near-duplicate
groups that cross classes (label conflicts) or splits (leakage), and `leaked_images`: the non-training images
with an exact or near duplicate in the training split (pairwise, not through chains of groups).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from braintriage.datasets import SEED_SPLITS, Dataset, load_dataset
from braintriage.near_duplicates import NEAR_DUPLICATE_DISTANCE, hamming_matrix, near_duplicate_groups, phash64
from braintriage.preprocess import IMAGE_FORMATS, ImageReadError, decode_image


@dataclass
class ImageRecord:
    split: str
    path: str
    label: str  # tumor type where known, else tumor / no_tumor
    size: tuple[int, int] | None = None
    mode: str | None = None
    file_sha: str | None = None
    pixel_sha: str | None = None
    phash: np.uint64 | None = None
    error: str | None = None


def _read(split: str, ds: Dataset, sample) -> ImageRecord:
    label = sample.tumor_type or ("tumor" if sample.tumor else "no_tumor")
    rec = ImageRecord(split, ds.relpath(sample), label)
    try:
        rec.file_sha = hashlib.sha256(sample.path.read_bytes()).hexdigest()
        with Image.open(sample.path, formats=IMAGE_FORMATS) as im:
            rec.size, rec.mode = im.size, im.mode
        gray = decode_image(sample.path)
        rec.pixel_sha = hashlib.sha256(f"{gray.size}".encode() + gray.tobytes()).hexdigest()
        rec.phash = phash64(gray)
    except (ImageReadError, OSError) as e:
        rec.error = str(e)
    return rec


def dataset_splits(root: str | Path) -> dict[str, Dataset]:
    """All splits of a dataset: Training and Testing of a seed root, else the one set as 'all'."""
    if _is_seed(root):
        return {split: load_dataset(root, split) for split in SEED_SPLITS}
    return {"all": load_dataset(root)}


def _is_seed(root: str | Path) -> bool:
    root = Path(root)
    return root.is_dir() and all((root / d).is_dir() for d in SEED_SPLITS.values())


def leaked_mask(test_hashes: np.ndarray, train_hashes: np.ndarray,
                max_distance: int = NEAR_DUPLICATE_DISTANCE) -> tuple[np.ndarray, np.ndarray]:
    """Per test image: has it a near duplicate in training? And the distance to its nearest one."""
    if len(train_hashes) == 0 or len(test_hashes) == 0:
        nearest = np.full(len(test_hashes), 64, dtype=np.uint8)
    else:
        nearest = hamming_matrix(test_hashes, train_hashes).min(axis=1)
    return nearest <= max_distance, nearest


def image_hashes(paths: list[Path], workers: int = 4) -> np.ndarray:
    """pHash of each readable image (unreadable ones are skipped)."""
    def one(p: Path) -> int:
        try:
            return int(phash64(decode_image(p)))
        except ImageReadError:
            return -1

    with ThreadPoolExecutor(max_workers=workers) as pool:
        values = list(pool.map(one, paths))
    return np.array([v for v in values if v >= 0], dtype=np.uint64)


def dataset_hashes(data: str | Path, split: str = "training") -> np.ndarray:
    """pHashes of a dataset's images (one split of a seed root), or those stored in a decoded cache."""
    if str(data).endswith(".npz"):
        from braintriage.cache import DecodedSet

        return DecodedSet.load(data).phash
    return image_hashes([s.path for s in load_dataset(data, split=split).samples])


def audit(root: str | Path, workers: int = 4) -> dict:
    """Every image of a dataset read once (in threads): counts per split and class, sizes, unreadable files,
    exact and near duplicates, label conflicts among them, groups that cross splits, and the held-out images
    that leak from training."""
    t0 = time.time()
    splits = dataset_splits(root)
    jobs = [(name, ds, s) for name, ds in splits.items() for s in ds.samples]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        records = list(pool.map(lambda job: _read(*job), jobs))
    ok = [r for r in records if r.error is None]

    per_split = {}
    for name in splits:
        rows = [r for r in records if r.split == name]
        per_split[name] = {"images": len(rows), "classes": dict(sorted(Counter(r.label for r in rows).items()))}

    file_groups, pixel_groups = _groups_by(ok, "file_sha"), _groups_by(ok, "pixel_sha")
    hashes = np.array([r.phash for r in ok], dtype=np.uint64)
    near = defaultdict(list)
    for r, g in zip(ok, near_duplicate_groups(hashes)):
        near[g].append(r)
    near_groups = [g for g in near.values() if len(g) > 1]
    cross_split = [g for g in near_groups if len({r.split for r in g}) > 1]
    leak = held_out_leakage(ok) if "training" in splits else {"leaked_images": 0}

    def examples(groups: list[list[ImageRecord]], n: int = 10) -> list[list[str]]:
        return [[f"{r.split}/{r.path}" if len(splits) > 1 else r.path for r in g] for g in groups[:n]]

    return {
        "dataset": str(root),
        "layout": next(iter(splits.values())).layout,
        "images": len(records),
        "splits": per_split,
        "sizes": size_summary(ok),
        "modes": dict(Counter(r.mode for r in ok)),
        "unreadable": [{"split": r.split, "path": r.path, "error": r.error} for r in records if r.error],
        "exact_duplicates": {
            "file_identical_groups": len(file_groups),
            "file_identical_images": sum(len(g) for g in file_groups),
            "pixel_identical_groups": len(pixel_groups),
            "pixel_identical_images": sum(len(g) for g in pixel_groups),
        },
        "near_duplicates": {
            "method": "imagehash.phash, 64 bits (8x8 DCT of the grayscale image)",
            "max_hamming_distance": NEAR_DUPLICATE_DISTANCE,
            "grouping": "connected components of the 'within distance' graph",
            "groups": len(near_groups),
            "images_in_groups": sum(len(g) for g in near_groups),
            "largest_group": max((len(g) for g in near_groups), default=0),
        },
        "label_conflicts": label_conflicts(ok, hashes, pixel_groups, examples),
        "cross_split_groups": {"groups": len(cross_split), "examples": examples(cross_split)},
        **leak,
        "seconds": round(time.time() - t0, 1),
    }


def _groups_by(records: list[ImageRecord], key: str) -> list[list[ImageRecord]]:
    """Groups of two or more records sharing one value of `key` (a file or pixel hash)."""
    by = defaultdict(list)
    for r in records:
        by[getattr(r, key)].append(r)
    return [g for g in by.values() if len(g) > 1]


def label_conflicts(ok: list[ImageRecord], hashes: np.ndarray, pixel_groups: list[list[ImageRecord]],
                    examples: Callable[[list[list[ImageRecord]]], list[list[str]]]) -> dict:
    """Images that look alike and carry different labels. Counted pairwise (two images within the distance,
    different classes), not through chains of groups, where one ambiguous link would make a whole group look
    conflicted."""
    close = np.triu(hamming_matrix(hashes, hashes) <= NEAR_DUPLICATE_DISTANCE, k=1) if len(ok) else np.zeros((0, 0))
    conflict_pairs = [(ok[i], ok[j]) for i, j in np.argwhere(close) if ok[i].label != ok[j].label]
    binary = lambda label: "no_tumor" if label == "no_tumor" else "tumor"  # noqa: E731
    binary_conflicts = [(a, b) for a, b in conflict_pairs if binary(a.label) != binary(b.label)]
    exact_conflicts = [g for g in pixel_groups if len({r.label for r in g}) > 1]
    return {
        "note": "pHash pairs are candidates: at this distance pHash also links different slices with a "
                "similar outline; pixel-identical groups with two labels are certain conflicts",
        "pixel_identical_groups": len(exact_conflicts),
        "pixel_identical_examples": examples(exact_conflicts),
        "pairs": len(conflict_pairs),
        "images": len({id(r) for pair in conflict_pairs for r in pair}),
        "pairs_tumor_vs_no_tumor": len(binary_conflicts),
        "examples": [[f"{a.split}/{a.path} ({a.label})", f"{b.split}/{b.path} ({b.label})"]
                     for a, b in (binary_conflicts + conflict_pairs)[:10]],
    }


def held_out_leakage(ok: list[ImageRecord]) -> dict:
    """Which non-training images have an identical file or decoded pixels, or a near-duplicate pHash, in the
    training split: the part of a test score that measures memory, not generalisation."""
    train = [r for r in ok if r.split == "training"]
    held_out = [r for r in ok if r.split != "training"]
    train_hashes = np.array([r.phash for r in train], dtype=np.uint64)
    leaked, nearest = leaked_mask(np.array([r.phash for r in held_out], dtype=np.uint64), train_hashes)
    train_files = {r.file_sha for r in train}
    train_pixels = {r.pixel_sha for r in train}
    exact = np.array([r.file_sha in train_files or r.pixel_sha in train_pixels for r in held_out], bool)
    leaked |= exact
    return {
        "leaked_images": int(leaked.sum()),
        "leaked_definition": f"non-training image with an identical file or decoded pixels, or a pHash "
                             f"within {NEAR_DUPLICATE_DISTANCE} bits, in the training split",
        "held_out_images": len(held_out),
        "leaked_by_class": dict(sorted(Counter(r.label for r, m in zip(held_out, leaked) if m).items())),
        "leaked_pixel_identical": int(sum(r.pixel_sha in train_pixels for r in held_out)),
        "leaked_file_identical": int(sum(r.file_sha in train_files for r in held_out)),
        "leaked_at_phash_distance_0": int((nearest == 0).sum()),
        "leaked_paths": [r.path for r, m in zip(held_out, leaked) if m],
    }


def size_summary(ok: list[ImageRecord]) -> dict:
    """How many image sizes there are, the commonest, and the range of widths and heights."""
    sizes = Counter(f"{r.size[0]}x{r.size[1]}" for r in ok)
    widths = np.array([r.size[0] for r in ok]) if ok else np.zeros(1)
    heights = np.array([r.size[1] for r in ok]) if ok else np.zeros(1)
    return {"distinct": len(sizes), "most_common": dict(sizes.most_common(10)),
            "width_min_median_max": [int(widths.min()), int(np.median(widths)), int(widths.max())],
            "height_min_median_max": [int(heights.min()), int(np.median(heights)), int(heights.max())]}
