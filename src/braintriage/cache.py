"""The decoded cache: a dataset decoded and preprocessed once into a uint8 array file.

Training reads images from here instead of decoding JPEGs every epoch. The file is keyed by the dataset's
fingerprint and the preprocessing settings, so a changed image or a new input size makes a new one.
It also holds each image's perceptual hash and near-duplicate group (for leak-free validation splits),
and the files that could not be read, reported once when the cache is built.

A cache file is a plain .npz (images as lossless PNG bytes) read with allow_pickle=False; it can be carried
to a GPU machine that has no copy of the dataset and trained on directly (`braintriage train CACHE.npz`). Where
even PNG is too large to carry, `save(..., jpeg_quality=Q)` writes JPEG instead, under a fingerprint marked
"+jpegQ" (not the dataset's images any more); `load` opens either.
"""

from __future__ import annotations

import hashlib
import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from braintriage.atomic_files import written_atomically
from braintriage.datasets import TUMOR_TYPES, Dataset, DatasetLayoutError
from braintriage.preprocess import ImageReadError, PreprocessConfig, decode_image, preprocess
from braintriage.user_cache import user_cache_dir

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
    source: np.ndarray | None = None  # str (N,), the collection each image came from (see datasets.py)
    sources: dict = field(default_factory=dict)  # per source: fingerprint, images, counts (from_sources)

    def __post_init__(self):
        if self.source is None:
            self.source = np.full(len(self.tumor), "data", dtype=object).astype(str)

    def __len__(self) -> int:
        return len(self.tumor)

    def save(self, path: str | Path, jpeg_quality: int | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fingerprint = self.fingerprint + (f"+jpeg{jpeg_quality}" if jpeg_quality else "")
        meta = {"format": CACHE_FORMAT, "fingerprint": fingerprint, "preprocess": self.preprocess.to_dict(),
                "errors": self.errors, "tumor_types": TUMOR_TYPES, "sources": self.sources}
        png, offsets = _encode_images(self.images, jpeg_quality)
        # runs started side by side may build the same cache at once; a killed run never leaves half of one
        with written_atomically(path, suffix=".tmp.npz") as tmp:
            np.savez(tmp, png=png, png_offsets=offsets, tumor=self.tumor, tumor_type=self.tumor_type,
                     paths=self.paths.astype(str), phash=self.phash, groups=self.groups,
                     source=self.source.astype(str), meta=np.array(json.dumps(meta)))

    @classmethod
    def load(cls, path: str | Path) -> "DecodedSet":
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != CACHE_FORMAT:
                raise DatasetLayoutError(f"{path}: cache format {meta.get('format')} is not {CACHE_FORMAT}; rebuild it")
            images = _decode_png(z["png"], z["png_offsets"], meta["preprocess"]["size"])
            # A cache written before sources were kept is one source, named after the file.
            source = z["source"] if "source" in z.files else np.full(len(z["tumor"]), Path(path).stem).astype(str)
            return cls(images=images, tumor=z["tumor"], tumor_type=z["tumor_type"], paths=z["paths"],
                       phash=z["phash"], groups=z["groups"], fingerprint=meta["fingerprint"],
                       preprocess=PreprocessConfig.from_dict(meta["preprocess"]),
                       errors=[tuple(e) for e in meta["errors"]], source=source, sources=meta.get("sources", {}))

    def subset(self, index: np.ndarray) -> "DecodedSet":
        return DecodedSet(self.images[index], self.tumor[index], self.tumor_type[index], self.paths[index],
                          self.phash[index], self.groups[index], self.fingerprint, self.preprocess, self.errors,
                          self.source[index], self.sources)

    def source_counts(self) -> dict[str, dict]:
        """Per source: images, tumors, normals, and tumors by type (what a model file records)."""
        out = {}
        for name in sorted(set(self.source.tolist())):
            m = self.source == name
            types = {t: int(((self.tumor_type == k) & m).sum()) for k, t in enumerate(TUMOR_TYPES) if k > 0}
            out[name] = {"images": int(m.sum()), "tumor": int(self.tumor[m].sum()),
                         "no_tumor": int((self.tumor[m] == 0).sum()),
                         "tumor_type_unknown": int(((self.tumor == 1) & (self.tumor_type < 0) & m).sum()),
                         **({"types": types} if any(types.values()) else {})}
            if name in self.sources:
                out[name]["fingerprint"] = self.sources[name].get("fingerprint")
        return out


def from_sources(parts: list[DecodedSet]) -> DecodedSet:
    """Several decoded datasets as one training set. Each image keeps its source (and its path is prefixed
    with it, so names stay unique); near-duplicate groups are recomputed over all of them, so a near-copy in
    two collections never lands on both sides of a split; the fingerprint covers every source's."""
    from braintriage.near_duplicates import near_duplicate_groups

    if len(parts) == 1:
        only = parts[0]
        if not only.sources and len(set(only.source.tolist())) == 1:
            only.sources = {str(only.source[0]): {"fingerprint": only.fingerprint}}
        return only
    if len({p.preprocess for p in parts}) > 1:
        raise DatasetLayoutError("the training sources were decoded with different preprocessing")
    names = [str(p.source[0]) if len(set(p.source.tolist())) == 1 else None for p in parts]
    every = [n for p in parts for n in sorted(set(p.source.tolist()))]
    if len(every) != len(set(every)):
        raise DatasetLayoutError(f"two training sources share a name ({', '.join(sorted(every))}); rename a "
                                 "folder or give a manifest a source column")
    fingerprints = {n or f"part{k}": p.fingerprint for k, (n, p) in enumerate(zip(names, parts))}
    fingerprint = hashlib.sha256(json.dumps(sorted(fingerprints.items())).encode()).hexdigest()
    phash = np.concatenate([p.phash for p in parts])
    merged = DecodedSet(
        images=np.concatenate([p.images for p in parts]), tumor=np.concatenate([p.tumor for p in parts]),
        tumor_type=np.concatenate([p.tumor_type for p in parts]),
        paths=np.concatenate([np.char.add(p.source.astype(str), np.char.add("/", p.paths.astype(str)))
                              for p in parts]),
        phash=phash, groups=near_duplicate_groups(phash), fingerprint=fingerprint, preprocess=parts[0].preprocess,
        errors=[e for p in parts for e in p.errors], source=np.concatenate([p.source for p in parts]),
        sources={name: {"fingerprint": fp} for name, fp in fingerprints.items()})
    return merged


def _encode_images(images: np.ndarray, jpeg_quality: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Lossless PNG per image: about half the bytes of zlib over the raw array, so a 200 px cache of the
    seed Training set (about 50 MB) fits the 64 MiB that travels to a GPU machine. With `jpeg_quality`, JPEG
    (q92: about half PNG's bytes again) for when the three sources together must travel at 200 px."""
    blobs = []
    for a in images:
        buf = io.BytesIO()
        if jpeg_quality:
            Image.fromarray(a).save(buf, "JPEG", quality=jpeg_quality)
        else:
            Image.fromarray(a).save(buf, "PNG", optimize=True)
        blobs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    return (np.concatenate(blobs) if blobs else np.zeros(0, np.uint8)), offsets


def _decode_png(png: np.ndarray, offsets: np.ndarray, size: int) -> np.ndarray:
    images = np.zeros((len(offsets) - 1, size, size), dtype=np.uint8)
    for i in range(len(images)):
        images[i] = np.asarray(Image.open(io.BytesIO(png[offsets[i]:offsets[i + 1]].tobytes())))
    return images


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
        source=np.array([ds.source_of(ds.samples[i]) for i in keep], dtype=str),
    )


def cached_decode(ds: Dataset, config: PreprocessConfig, cache_dir: Path | None = None,
                  log=print) -> DecodedSet:
    """Decode `ds`, or load it from the cache when this fingerprint and preprocessing were seen before."""
    fingerprint = ds.fingerprint()
    path = (cache_dir or user_cache_dir()) / f"decoded-{fingerprint[:16]}-{config.key()}.npz"
    if path.exists():
        decoded = DecodedSet.load(path)
        if (decoded.source == path.stem).all():  # written before sources were kept: one dataset, one name
            decoded.source = np.full(len(decoded), ds.name).astype(str)
        return decoded
    log(f"decoding {len(ds)} images into {path} (once)")
    decoded = decode_dataset(ds, config, fingerprint)
    for p, msg in decoded.errors:
        log(f"skipped unreadable image {p}: {msg}")
    decoded.save(path)
    return decoded
