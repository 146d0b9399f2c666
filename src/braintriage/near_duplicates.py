"""Perceptual hashes and near-duplicate groups.

The seed dataset holds many near-identical neighbouring slices and test images copied from the training
set. Images whose 64-bit pHash (imagehash.phash, 8x8 DCT) differ in at most `NEAR_DUPLICATE_DISTANCE` bits
are linked, and a group is a connected component of those links. Splits made by group never put two
near-copies on both sides of a train/validation boundary.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

NEAR_DUPLICATE_DISTANCE = 6  # bits out of 64; 0 means the same hash


def phash64(im: Image.Image) -> np.uint64:
    import imagehash  # only hashing needs it: grouping hashes already in a decoded cache does not

    bits = imagehash.phash(im, hash_size=8).hash.flatten()
    return np.uint64(int("".join("1" if b else "0" for b in bits), 2))


def hamming_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances between two arrays of uint64 hashes, as uint8 (len(a), len(b))."""
    bits_a = np.unpackbits(a.astype(">u8").view(np.uint8).reshape(-1, 8), axis=1).astype(np.float32)
    bits_b = np.unpackbits(b.astype(">u8").view(np.uint8).reshape(-1, 8), axis=1).astype(np.float32)
    # |x - y| summed over bits = x.(1-y) + (1-x).y, as two matrix products.
    d = bits_a @ (1 - bits_b).T + (1 - bits_a) @ bits_b.T
    return d.round().astype(np.uint8)


def near_duplicate_groups(hashes: np.ndarray, max_distance: int = NEAR_DUPLICATE_DISTANCE) -> np.ndarray:
    """Group id per image: connected components of the 'within max_distance' graph."""
    if len(hashes) == 0:
        return np.zeros(0, dtype=np.int64)
    linked = hamming_matrix(hashes, hashes) <= max_distance
    _, labels = connected_components(csr_matrix(linked), directed=False)
    return labels.astype(np.int64)
