"""Fitting a model's out-of-distribution guard (ood.py) on its training data, after training: the grouped training
split for the feature model, the validation split for the alarm threshold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from braintriage.cache import DecodedSet
from braintriage.modelfile import update_metadata
from braintriage.splits import grouped_split
from braintriage.synthetic_lesions import add_lesions


def calibrate_ood(model_path: str | Path, decoded: DecodedSet, output: str | Path, val_fraction: float = 0.15,
                  seed: int = 0, log=print) -> dict | None:
    """Fit the out-of-distribution guard of a model on its training data: the grouped train split for the
    feature model, the validation split for the alarm threshold. A model trained with synthetic lesions
    learned from lesion-painted normals too, so they join both splits (one painted copy of each normal): an
    image like them, a mass on a T2 or FLAIR slice, is what the model was made for, not a stranger.
    Writes `output` with metadata["ood"]."""
    from braintriage import ood
    from braintriage.inference import Predictor

    predictor = Predictor(model_path)
    designs = ood.designs_for(predictor.network.available_guard_layers)  # a refit replaces any earlier guard whole
    layers = ood.designs_layers(designs)
    lesions = float(predictor.metadata.get("training", {}).get("config", {}).get("synthetic_lesions", 0))
    train_idx, val_idx = grouped_split(decoded, val_fraction, seed)

    def guard_images(idx: np.ndarray) -> np.ndarray:
        if lesions <= 0:
            return decoded.images[idx]
        return np.concatenate([decoded.images[idx], painted_normals(decoded, idx, seed)])

    train_features = predictor.pooled_by_layer(guard_images(train_idx), layers)
    if train_features is None:
        log("no out-of-distribution guard: this architecture has no pooled features")
        return None
    params = ood.fit_designs(train_features, predictor.pooled_by_layer(guard_images(val_idx), layers), designs)
    params["synthetic_lesions"] = lesions > 0
    update_metadata(model_path, output, {"ood": params})
    log(f"out-of-distribution guard: threshold {params['threshold']:.2f} (validation false alarms "
        f"{params['validation_false_alarm_rate']:.3f})" + (", fitted with lesion-painted normals" if lesions else ""))
    return params


def painted_normals(decoded: DecodedSet, idx: np.ndarray, seed: int) -> np.ndarray:
    """One lesion-painted copy of each no-tumor image among idx (uint8), the same every call (a fixed seed)."""
    normals = idx[decoded.tumor[idx] == 0]
    images = torch.from_numpy(decoded.images[normals]).unsqueeze(1).float() / 255.0
    zeros = torch.zeros(len(normals), dtype=torch.long)
    painted, *_ = add_lesions(images, zeros, torch.ones(len(normals)), 1.0, 1, 1.0,
                              torch.Generator().manual_seed(seed))
    return (painted[:, 0] * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
