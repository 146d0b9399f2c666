"""The inference runtime: a model file in, P(tumor) per scan out. `predict`, `evaluate` and the tests all
call `Predictor`, so every caller sees the same preprocessing, batching and threshold.

A file that cannot be read is answered with an error on its own row; the rest of the batch still runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from braintriage.modelfile import BUNDLED_MODEL, load_model
from braintriage.models import to_model_input, tumor_probability
from braintriage.preprocess import ImageReadError, PreprocessConfig, load_and_preprocess


@dataclass
class Prediction:
    path: str  # as given, or found under a given folder
    tumor_probability: float | None = None
    prediction: str | None = None  # "tumor" or "no_tumor" at the model's threshold
    type_probabilities: dict[str, float] | None = None  # for a model trained on tumor types
    error: str | None = None


def expand_inputs(inputs: list[str | Path]) -> list[str]:
    """Files as given; folders walked recursively (sorted, hidden files skipped). A path that does not
    exist is kept, so it gets its own error row."""
    found: list[str] = []
    for item in inputs:
        item = str(item)
        if os.path.isdir(item):
            for dirpath, dirnames, filenames in os.walk(item):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                found += [os.path.join(dirpath, f) for f in sorted(filenames) if not f.startswith(".")]
        else:
            found.append(item)
    return found


class Predictor:
    def __init__(self, model_path: str | Path | None = None, batch_size: int = 32, device: str = "cpu"):
        self.model_path = Path(model_path) if model_path else BUNDLED_MODEL
        self.model, self.metadata = load_model(self.model_path)
        self.device = torch.device(device)
        self.model.to(self.device)
        self.batch_size = batch_size
        self.preprocess = PreprocessConfig.from_dict(self.metadata["input"]["preprocess"])
        norm = self.metadata["input"]["normalization"]
        self.mean, self.std = norm["mean"], norm["std"]
        self.threshold = float(self.metadata["threshold"])
        self.temperature = float(self.metadata.get("temperature", 1.0))
        self.class_names = self.metadata["class_names"]

    @torch.inference_mode()
    def predict_arrays(self, images_u8: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Preprocessed uint8 images (N, size, size) -> P(tumor) (N,) and type probabilities (N, 4) or None."""
        p_all, types_all = [], []
        for i in range(0, len(images_u8), self.batch_size):
            x = to_model_input(torch.from_numpy(np.ascontiguousarray(images_u8[i:i + self.batch_size])),
                               self.mean, self.std).to(self.device)
            p, types = tumor_probability(self.model(x), self.temperature)
            p_all.append(p.cpu().numpy())
            if types is not None:
                types_all.append(types.cpu().numpy())
        empty = np.zeros(0, dtype=np.float32)
        return (np.concatenate(p_all) if p_all else empty), (np.concatenate(types_all) if types_all else None)

    def label(self, p_tumor: float) -> str:
        return "tumor" if p_tumor >= self.threshold else "no_tumor"

    def predict_files(self, paths: list[str]) -> list[Prediction]:
        results = [Prediction(path=str(p)) for p in paths]
        for start in range(0, len(results), self.batch_size):
            chunk = results[start:start + self.batch_size]
            arrays, ok = [], []
            for r in chunk:
                try:
                    arrays.append(load_and_preprocess(r.path, self.preprocess))
                    ok.append(r)
                except ImageReadError as e:
                    r.error = str(e)
            if not ok:
                continue
            p_tumor, types = self.predict_arrays(np.stack(arrays))
            for j, r in enumerate(ok):
                r.tumor_probability = float(p_tumor[j])
                r.prediction = self.label(r.tumor_probability)
                if types is not None:
                    r.type_probabilities = {n: float(v) for n, v in zip(self.class_names, types[j])}
        return results
