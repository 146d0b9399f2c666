"""Fitting a model's out-of-distribution guard (ood.py) on its training data, after training: the grouped training
split for the feature model, the validation split for the alarm threshold.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from braintriage import ood
from braintriage.cache import DecodedSet
from braintriage.modelfile import update_metadata
from braintriage.ood import FAMILIAR_PERCENTILE
from braintriage.splits import grouped_split
from braintriage.synthetic_lesions import add_lesions

if TYPE_CHECKING:  # inference imports the whole runtime; guard_fit needs it only once a model is read
    from braintriage.inference import Predictor


def calibrate_ood(model_path: str | Path, decoded: DecodedSet, output: str | Path, val_fraction: float = 0.15,
                  seed: int = 0, log=print) -> dict | None:
    """Fit the out-of-distribution guard of a model on its training data: the grouped train split for the
    feature model, the validation split for the alarm threshold. A model trained with synthetic lesions
    learned from lesion-painted normals too, so they join both splits (one painted copy of each normal): an
    image like them, a mass on a T2 or FLAIR slice, is what the model was made for, not a stranger.
    Writes `output` with metadata["ood"]."""
    from braintriage.inference import Predictor

    predictor = Predictor(model_path)
    train_idx, val_idx = grouped_split(decoded, val_fraction, seed)
    train_pooled = guard_training_features(predictor, decoded, train_idx, seed)
    if train_pooled is None:
        log("no out-of-distribution guard: this architecture has no pooled features")
        return None
    params = fit_guard(predictor, train_pooled, decoded, val_idx, seed)
    update_metadata(model_path, output, {"ood": params})
    log(f"out-of-distribution guard: threshold {params['threshold']:.2f} (validation false alarms "
        f"{params['validation_false_alarm_rate']:.3f})" + (", fitted with lesion-painted normals"
                                                            if params["synthetic_lesions"] else ""))
    return params


def guard_training_features(predictor: "Predictor", decoded: DecodedSet, train_idx: np.ndarray, seed: int
                            ) -> dict[str, np.ndarray] | None:
    """The pooled feature maps (by layer) of the images a guard's feature model is fitted on: `train_idx`, with
    painted copies of its normals for a model trained with lesions; None where the network has none."""
    layers = ood.designs_layers(ood.designs_for(predictor.network.available_guard_layers))
    images = guard_images(decoded, train_idx, trained_with_lesions(predictor.metadata), seed,
                          infiltrative_share(predictor.metadata))
    return predictor.pooled_by_layer(images, layers)


def fit_guard(predictor: "Predictor", train_pooled: dict[str, np.ndarray], decoded: DecodedSet, val_idx: np.ndarray,
              seed: int) -> dict:
    """A guard's parameters (ood.fit_designs): the feature model from `train_pooled`, the alarm threshold and the
    normals' guard scores from `val_idx` (with painted copies of its normals, as `guard_training_features`). A refit
    replaces any earlier guard whole, but keeps the familiarity rule at its percentile."""
    designs = ood.designs_for(predictor.network.available_guard_layers)
    lesions = trained_with_lesions(predictor.metadata)
    images = guard_images(decoded, val_idx, lesions, seed, infiltrative_share(predictor.metadata))
    val_pooled = predictor.pooled_by_layer(images, ood.designs_layers(designs))
    params = ood.fit_designs(train_pooled, val_pooled, designs, validation_normals(decoded, val_idx),
                             (predictor.ood or {}).get("familiar_percentile"))
    params["synthetic_lesions"] = lesions
    return params


def set_familiarity(model_path: str | Path, decoded: DecodedSet, output: str | Path, val_fraction: float = 0.15,
                    seed: int = 0, percentile: float = FAMILIAR_PERCENTILE, log=print) -> float:
    """Turn the familiarity rule on (verdicts.is_familiar): keep the model's guard as it is and set its
    `familiar_below` to the guard score under which `percentile` of the normals of the validation split its
    training held out lie. Writes `output`; returns the score."""
    from braintriage.inference import Predictor

    predictor = Predictor(model_path)
    if not predictor.ood:
        raise ValueError(f"{model_path}: the model has no out-of-distribution guard (fit one with calibrate-ood)")
    _, val_idx = grouped_split(decoded, val_fraction, seed)
    normals = validation_normals(decoded, val_idx)
    if not len(normals):
        raise ValueError("the validation split holds no normals to read the familiarity rule off")
    images = decoded.images[val_idx[normals]]
    ratios = ood.threshold_ratios(predictor.pooled_by_layer(images), ood.as_arrays(predictor.ood))
    below = ood.familiar_below(ratios, percentile)
    update_metadata(model_path, output, {"ood": {**predictor.ood, "familiar_below": below,
                                                 "familiar_percentile": percentile}})
    log(f"familiarity rule on: a low score is shown clear only at a guard score up to {below:.3f} of its threshold "
        f"(the {percentile:g}th percentile of {len(normals)} validation normals); the guard is unchanged")
    return below


def validation_normals(decoded: DecodedSet, val_idx: np.ndarray) -> np.ndarray:
    """The positions in `val_idx` of its normals (in `guard_images`, whose painted copies come after, the same
    rows)."""
    return np.flatnonzero(decoded.tumor[val_idx] == 0)


def _training_setting(metadata: dict, name: str) -> float:
    """A numeric `train` setting a model file records (0 where it predates the setting)."""
    return float(metadata.get("training", {}).get("config", {}).get(name, 0))


def trained_with_lesions(metadata: dict) -> bool:
    return _training_setting(metadata, "synthetic_lesions") > 0


def infiltrative_share(metadata: dict) -> float:
    """The share of a model's painted training masses that were infiltrative (--infiltrative-lesions; 0 before it)."""
    return _training_setting(metadata, "infiltrative_lesions")


def guard_images(decoded: DecodedSet, idx: np.ndarray, lesions: bool, seed: int, infiltrative: float = 0.0
                 ) -> np.ndarray:
    """The images of a split the guard is fitted on: those of `idx`, and for a model trained with synthetic lesions
    one lesion-painted copy of each normal among them, painted as the model's training painted them."""
    if not lesions:
        return decoded.images[idx]
    return np.concatenate([decoded.images[idx], painted_normals(decoded, idx, seed, infiltrative)])


def painted_normals(decoded: DecodedSet, idx: np.ndarray, seed: int, infiltrative: float = 0.0) -> np.ndarray:
    """One lesion-painted copy of each no-tumor image among idx (uint8), the same every call (a fixed seed);
    `infiltrative` of the masses infiltrative ones (synthetic_lesions.py)."""
    normals = idx[decoded.tumor[idx] == 0]
    images = torch.from_numpy(decoded.images[normals]).unsqueeze(1).float() / 255.0
    zeros = torch.zeros(len(normals), dtype=torch.long)
    painted, *_ = add_lesions(images, zeros, torch.ones(len(normals)), 1.0, 1, 1.0,
                              torch.Generator().manual_seed(seed), infiltrative=infiltrative)
    return (painted[:, 0] * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
