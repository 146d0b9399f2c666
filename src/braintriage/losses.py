"""The training loss: one four-way head for images with a tumor type and for tumor / no-tumor images alike, and the
weights that keep any one source and class from dominating it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from braintriage.datasets import TUMOR_TYPES


# The training target of a tumor whose type is unknown (Br35H's "yes"), beside the TUMOR_TYPES indices.
UNTYPED_TUMOR = len(TUMOR_TYPES)


def cell_weights(targets: np.ndarray, source_ids: np.ndarray, num_sources: int, balance: float) -> np.ndarray:
    """A weight per (source, target) cell, from the training images' counts: every target class present gets
    the same total weight (the original study's balanced classes), and within a class each source's share
    grows as count ** balance, so a small collection is neither drowned (balance 1: every image alike) nor
    blown up to equal footing with a large one (0: every source alike). With one source these are the
    'balanced' weights n / (k * count): the minority 'no tumor' class counts as much as the rest. Returns
    (num_sources, num_targets), scaled so the mean weight per training image is 1."""
    num_targets = int(targets.max()) + 1 if len(targets) else 1
    counts = np.zeros((num_sources, max(num_targets, UNTYPED_TUMOR + 1)))
    np.add.at(counts, (source_ids, targets), 1)
    classes = counts.sum(0) > 0
    share = np.where(counts > 0, counts ** balance, 0.0)
    share = share / np.maximum(share.sum(0, keepdims=True), 1e-12) / classes.sum()
    weights = np.where(counts > 0, share / np.maximum(counts, 1), 0.0) * len(targets)
    # A cell absent from training (possible in a small validation split) weighs as its class's mean image.
    mean_of_class = np.where(classes, weights.sum(0) / np.maximum((counts > 0).sum(0), 1), 1.0)
    return np.where(counts > 0, weights, mean_of_class[None, :]).astype(np.float32)


def reweighted(weights: np.ndarray, targets: np.ndarray, train_idx: np.ndarray, multipliers: np.ndarray
               ) -> np.ndarray:
    """`weights` times per-image `multipliers` (e.g. an earlier run's mistakes counted more: "just train twice"),
    rescaled so that each target class keeps its total over train_idx: which images of a class count, not how
    much the class counts, changes."""
    out = weights * multipliers
    for target in np.unique(targets[train_idx]):
        members = train_idx[targets[train_idx] == target]
        out[targets == target] *= weights[members].sum() / max(out[members].sum(), 1e-12)
    return out.astype(np.float32)


def per_image_loss(logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy per image. A sigmoid model: binary. A type model: over the four classes, except for an
    UNTYPED_TUMOR target, where only P(tumor) = 1 - P(no tumor) is known: -log(1 - P(no tumor))."""
    logits = logits.float()
    if logits.shape[1] == 1:
        soft = targets.float() * (1 - smoothing) + 0.5 * smoothing
        return F.binary_cross_entropy_with_logits(logits[:, 0], soft, reduction="none")
    untyped = targets == UNTYPED_TUMOR
    typed = F.cross_entropy(logits, targets.clamp(max=logits.shape[1] - 1), reduction="none",
                            label_smoothing=smoothing)
    any_tumor = torch.logsumexp(logits, 1) - torch.logsumexp(logits[:, 1:], 1)
    return torch.where(untyped, any_tumor, typed)


def weighted_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, smoothing: float
                  ) -> torch.Tensor:
    """Mean of per_image_loss weighted by `weights`, one per image."""
    per_image = per_image_loss(logits, targets, smoothing)
    return (per_image * weights).sum() / weights.sum()


def correct_predictions(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """How many are right: the class for typed targets, tumor vs no tumor for UNTYPED_TUMOR."""
    if logits.shape[1] == 1:
        return ((logits[:, 0] > 0).long() == targets).sum()
    pred = logits.argmax(1)
    return torch.where(targets == UNTYPED_TUMOR, pred != 0, pred == targets).sum()
