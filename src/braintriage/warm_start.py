"""Starting a training run from a trained model file's weights (`train --init-from`).

Why: on the 2-core CPU only a 160 px EfficientNet-Lite0 triages 200 images a second (issue 24), while the same
recipe trained at 200 px finds more of the seed set's tumors out of fold (docs/model.md, sessions 28-31). A network
trained at one input size and run at another sees every structure at another apparent size, and its BatchNorm
statistics are those of the other size; on ImageNet a short fine-tune at the new size corrects both (Touvron et
al. 2019, "Fixing the train-test resolution discrepancy"). So a run may start from a trained model of the same
architecture and classes and train on at its own --image-size, or (--epochs 0) write it as it is at that size.
Tried in session 34 on the 200 px lesion recipe, no form of it (a 3-epoch fine-tune, BatchNorm statistics
re-estimated, the model as it is) kept held-out Br35H at 160 px (docs/model.md).

The starting model must not have trained on what the run is scored on. A leave-source-out run needs one that held
out the same source (`source_leak`); a run with a validation split, one whose own validation split is this run's
(`validation_split_leak`); a cross-validation fold, one that held out exactly that fold (crossval.fold_model).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from braintriage.cache import DecodedSet
from braintriage.modelfile import load_model
from braintriage.splits import model_validation_split


def source_leak(holdout_source: str | None, metadata: dict, role: str) -> str | None:
    """Why a model (a run's teacher or starting model: `role`) would pass on labels of the source this run holds
    out, or None: a leave-source-out run needs one that held out the same source."""
    held_out = metadata.get("training", {}).get("held_out_source")
    if holdout_source and held_out != holdout_source:
        return (f"this run holds out {holdout_source}, its {role} "
                + (f"held out {held_out}" if held_out else "trained on every source") +
                f": it would pass {holdout_source}'s labels on; give a {role} trained with --holdout-source "
                f"{holdout_source}")
    return None


def validation_split_leak(metadata: dict, decoded: DecodedSet, val_idx: np.ndarray) -> str | None:
    """Why a starting model would have trained on this run's validation images, or None: its own validation split,
    rebuilt from its metadata on these images, must be this run's (same data, seed and fraction)."""
    try:
        its_val_idx = model_validation_split(metadata, decoded)
    except (KeyError, ValueError) as e:
        return f"its validation split cannot be rebuilt on these images ({e})"
    if not np.array_equal(np.sort(its_val_idx), np.sort(val_idx)):
        return "it validated on other images than this run (another --seed or --val-fraction)"
    return None


def starting_weights(path: str | Path, architecture: str, class_names: list[str], holdout_source: str | None
                     ) -> dict[str, torch.Tensor]:
    """The state dict of the model file a run starts from, refused (ValueError, saying why) where it is another
    architecture, predicts other classes or trained on the source this run holds out."""
    with torch.random.fork_rng(devices=[]):  # building the network draws weights: the run's stream stays as it is
        model, metadata = load_model(path)
    if metadata["architecture"] != architecture:
        raise ValueError(f"{path} is a {metadata['architecture']}; this run trains a {architecture}")
    if list(metadata["class_names"]) != list(class_names):
        raise ValueError(f"{path} predicts {', '.join(metadata['class_names'])}; this run trains "
                         f"{', '.join(class_names)}")
    problem = source_leak(holdout_source, metadata, "starting model")
    if problem:
        raise ValueError(problem)
    return model.state_dict()
