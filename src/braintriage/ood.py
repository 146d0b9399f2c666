"""Out-of-distribution guard: does an input look like the brain MRI slices the model was trained on?

The model's own pooled last-layer features of the training split are summarised by a principal-component
model (mean, top components and their variances, and the average variance left over). A new image's score
is its Mahalanobis distance in that subspace plus its residual off the subspace, both in units of the
training variance. The alarm threshold is a high percentile of the scores of the *validation* split (held-out
training images), so it is calibrated on training data only; `Testing` is used only to report the false-alarm
rate. Blank or near-constant images are refused outright. Everything is numpy: the runtime needs no PyTorch.
"""

from __future__ import annotations

import numpy as np

COMPONENTS = 32
PERCENTILE = 99.5  # of validation scores: about 1 in 200 in-distribution slices raises a false alarm
MIN_STD = 2.0  # grey levels: below this a preprocessed image is blank


def fit(train_features: np.ndarray, val_features: np.ndarray, components: int = COMPONENTS,
        percentile: float = PERCENTILE) -> dict:
    """OOD parameters from pooled features (N, C) of the training split, thresholded on the validation split."""
    mean = train_features.mean(axis=0)
    centred = train_features - mean
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variances = singular ** 2 / max(len(train_features) - 1, 1)
    k = min(components, len(variances) - 1)
    params = {"mean": mean.tolist(), "components": vt[:k].tolist(), "variances": variances[:k].tolist(),
              "residual_variance": float(max(variances[k:].mean(), 1e-12)), "percentile": percentile}
    val_scores = score(val_features, params)
    params["threshold"] = float(np.percentile(val_scores, percentile))
    params["validation_false_alarm_rate"] = float((val_scores > params["threshold"]).mean())
    return params


def score(features: np.ndarray, params: dict) -> np.ndarray:
    """Novelty score per row of pooled features: subspace Mahalanobis + residual, per dimension."""
    mean, comps = np.asarray(params["mean"]), np.asarray(params["components"])
    centred = features - mean
    projected = centred @ comps.T
    inside = (projected ** 2 / np.asarray(params["variances"])).sum(axis=1)
    residual = ((centred - projected @ comps) ** 2).sum(axis=1) / params["residual_variance"]
    return (inside + residual) / features.shape[1]


def warnings_for(images_u8: np.ndarray, features: np.ndarray | None, params: dict | None) -> list[str | None]:
    """A warning per image, or None where it looks like the training data."""
    out: list[str | None] = []
    scores = score(features, params) if params and features is not None else None
    for i, image in enumerate(images_u8):
        if image.std() < MIN_STD:
            out.append("blank or near-constant image, not a brain MRI slice: prediction unreliable")
        elif scores is not None and scores[i] > params["threshold"]:
            out.append(f"does not look like the brain MRI slices the model was trained on (out-of-distribution "
                       f"score {scores[i]:.1f} > {params['threshold']:.1f}): prediction unreliable")
        else:
            out.append(None)
    return out
