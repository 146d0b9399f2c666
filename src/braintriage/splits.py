"""Which images train and which are held out: whole near-duplicate groups go to one side, stratified by source and
tumor type, so no near-copy of a held-out image is trained on. Validation splits, cross-validation folds, and a
trained model's own validation split rebuilt from its metadata. No PyTorch here.
"""

from __future__ import annotations

import hashlib
from typing import Iterator

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from braintriage.cache import DecodedSet
from braintriage.datasets import TUMOR_TYPES


def grouped_folds(decoded: DecodedSet, n_splits: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(train, held-out) indices for each of n_splits folds: whole near-duplicate groups go to one side,
    stratified by source and tumor type (by the binary label where types are unknown)."""
    label = np.where(decoded.tumor_type >= 0, decoded.tumor_type, decoded.tumor + len(TUMOR_TYPES))
    source = np.unique(decoded.source, return_inverse=True)[1]
    strata = source * (len(TUMOR_TYPES) + 2) + label  # one source: the type strata as before
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for train_idx, val_idx in folds.split(np.zeros(len(strata)), strata, decoded.groups):
        yield np.sort(train_idx), np.sort(val_idx)


def grouped_split(decoded: DecodedSet, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/validation indices: the first of round(1 / val_fraction) grouped folds."""
    return next(grouped_folds(decoded, max(2, round(1 / val_fraction)), seed))


def model_validation_split(metadata: dict, decoded: DecodedSet) -> np.ndarray:
    """The validation indices a trained model was chosen on, rebuilt from its metadata (seed and fraction), for
    scoring it afterwards on images it did not train on. Refuses data that is not what it was trained on."""
    if decoded.fingerprint != metadata["training"]["data_fingerprint"]:
        raise ValueError("these images are not the data this model was trained on (data fingerprints differ)")
    cfg = metadata["training"]["config"]
    return grouped_split(decoded, cfg["val_fraction"], cfg["seed"])[1]


def held_out_digest(decoded: DecodedSet, val_idx: np.ndarray) -> str:
    """Which images a fold holds out, as a digest of their paths: a fold's teacher must have held out the same."""
    return hashlib.sha256("\n".join(sorted(decoded.paths[val_idx].astype(str))).encode()).hexdigest()
