"""The decoded cache: a dataset decoded and preprocessed once into a uint8 array file.

Training reads images from here instead of decoding JPEGs every epoch. The file is keyed by the dataset's
fingerprint and the preprocessing settings, so a changed image or a new input size makes a new one.
It also holds each image's perceptual hash and near-duplicate group (for leak-free validation splits),
and the files that could not be read, reported once when the cache is built.

A cache file is a plain .npz (images as lossless PNG bytes) read with allow_pickle=False; it can be carried
to a GPU machine that has no copy of the dataset and trained on directly (`braintriage train CACHE.npz`).
"""

from __future__ import annotations

import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from braintriage.datasets import TUMOR_TYPES, Dataset
from braintriage.preprocess import ImageReadError, PreprocessConfig, decode_image, preprocess

CACHE_FORMAT = 1


@dataclass
class DecodedSet:
    images: np.ndarray  # uint8 (N, size, size)
    tumor: np.ndarray  # int64 (N,), 1 = tumor
    tumor_type: np.ndarray  # int64 (N,), index into TUMOR_TYPES, -1 where unknown
    paths: np.ndarray  # str (N,), relative to the dataset root
    phash: np.ndarray  # uint64 (N,)
    groups: np.ndarray  # int64 (N,), near-duplicate group id
    fingerprint: str
    preprocess: PreprocessConfig
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, message) of unreadable files

    def __len__(self) -> int:
        return len(self.tumor)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": CACHE_FORMAT, "fingerprint": self.fingerprint, "preprocess": self.preprocess.to_dict(),
                "errors": self.errors, "tumor_types": TUMOR_TYPES}
        tmp = path.with_name(path.name + ".tmp.npz")
        png, offsets = _encode_png(self.images)
        np.savez(tmp, png=png, png_offsets=offsets, tumor=self.tumor, tumor_type=self.tumor_type,
                            paths=self.paths.astype(str), phash=self.phash, groups=self.groups,
                            meta=np.array(json.dumps(meta)))
        os.replace(tmp, path)  # atomic: a killed run never leaves half a cache

    @classmethod
    def load(cls, path: str | Path) -> "DecodedSet":
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != CACHE_FORMAT:
                raise ValueError(f"{path}: cache format {meta.get('format')} is not {CACHE_FORMAT}; rebuild it")
            images = _decode_png(z["png"], z["png_offsets"], meta["preprocess"]["size"])
            return cls(images=images, tumor=z["tumor"], tumor_type=z["tumor_type"], paths=z["paths"],
                       phash=z["phash"], groups=z["groups"], fingerprint=meta["fingerprint"],
                       preprocess=PreprocessConfig.from_dict(meta["preprocess"]),
                       errors=[tuple(e) for e in meta["errors"]])

    def subset(self, index: np.ndarray) -> "DecodedSet":
        return DecodedSet(self.images[index], self.tumor[index], self.tumor_type[index], self.paths[index],
                          self.phash[index], self.groups[index], self.fingerprint, self.preprocess, self.errors)


def _encode_png(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lossless PNG per image: about half the bytes of zlib over the raw array, so a 200 px cache of the
    seed Training set (about 50 MB) fits the 64 MiB that travels to a GPU machine."""
    blobs = []
    for a in images:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "PNG", optimize=True)
        blobs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    return (np.concatenate(blobs) if blobs else np.zeros(0, np.uint8)), offsets


def _decode_png(png: np.ndarray, offsets: np.ndarray, size: int) -> np.ndarray:
    images = np.zeros((len(offsets) - 1, size, size), dtype=np.uint8)
    for i in range(len(images)):
        images[i] = np.asarray(Image.open(io.BytesIO(png[offsets[i]:offsets[i + 1]].tobytes())))
    return images


def default_cache_dir() -> Path:
    return Path(os.environ.get("BRAINTRIAGE_CACHE", Path.home() / ".cache" / "braintriage"))


def decode_dataset(ds: Dataset, config: PreprocessConfig, fingerprint: str | None = None,
                   workers: int = 4) -> DecodedSet:
    """Decode and preprocess every image of `ds` (unreadable ones are listed in `errors`, not raised)."""
    from braintriage.near_duplicates import near_duplicate_groups, phash64  # imagehash is only needed here

    def work(sample):
        try:
            im = decode_image(sample.path)
            return preprocess(im, config), phash64(im), None
        except ImageReadError as e:
            return None, None, str(e)

    with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL decodes outside the GIL
        results = list(pool.map(work, ds.samples))
    keep = [i for i, r in enumerate(results) if r[2] is None]
    errors = [(ds.relpath(ds.samples[i]), r[2]) for i, r in enumerate(results) if r[2] is not None]
    hashes = np.array([results[i][1] for i in keep], dtype=np.uint64)
    size = config.size
    images = np.stack([results[i][0] for i in keep]) if keep else np.zeros((0, size, size), np.uint8)
    return DecodedSet(
        images=images,
        tumor=np.array([ds.samples[i].tumor for i in keep], dtype=np.int64),
        tumor_type=np.array([TUMOR_TYPES.index(ds.samples[i].tumor_type) if ds.samples[i].tumor_type else -1
                             for i in keep], dtype=np.int64),
        paths=np.array([ds.relpath(ds.samples[i]) for i in keep], dtype=str),
        phash=hashes,
        groups=near_duplicate_groups(hashes),
        fingerprint=fingerprint or ds.fingerprint(),
        preprocess=config,
        errors=errors,
    )


def cached_decode(ds: Dataset, config: PreprocessConfig, cache_dir: Path | None = None,
                  log=print) -> DecodedSet:
    """Decode `ds`, or load it from the cache when this fingerprint and preprocessing were seen before."""
    fingerprint = ds.fingerprint()
    path = (cache_dir or default_cache_dir()) / f"decoded-{fingerprint[:16]}-{config.key()}.npz"
    if path.exists():
        return DecodedSet.load(path)
    log(f"decoding {len(ds)} images into {path} (once)")
    decoded = decode_dataset(ds, config, fingerprint)
    for p, msg in decoded.errors:
        log(f"skipped unreadable image {p}: {msg}")
    decoded.save(path)
    return decoded
