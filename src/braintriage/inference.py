"""The inference runtime: a model file in, P(tumor) per scan out. `predict`, `evaluate` and the tests all
call `Predictor`, so every caller sees the same preprocessing, batching and threshold.

A file that cannot be read is answered with an error on its own row; the rest of the batch still runs.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from braintriage.modelfile import BUNDLED_MODEL, load_model
from braintriage.models import to_model_input, tumor_activation_map, tumor_probability
from braintriage.preprocess import ImageReadError, PreprocessConfig, decode_image, preprocess


@dataclass
class Prediction:
    path: str  # as given, or found under a given folder
    tumor_probability: float | None = None
    prediction: str | None = None  # "tumor" or "no_tumor" at the model's threshold
    type_probabilities: dict[str, float] | None = None  # for a model trained on tumor types
    error: str | None = None
    image: np.ndarray | None = None  # the model's view of the scan (uint8), when heat maps were asked for
    heatmap: np.ndarray | None = None  # class activation map in [0, 1], same size as `image`

    @property
    def predicted_type(self) -> str | None:
        if not self.type_probabilities:
            return None
        return max(self.type_probabilities, key=self.type_probabilities.get)


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
    def predict_arrays(self, images_u8: np.ndarray, heatmaps: bool = False
                       ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Preprocessed uint8 images (N, size, size) -> P(tumor) (N,), type probabilities (N, 4) or None,
        and with `heatmaps` the class activation maps (N, size, size) in [0, 1] (None where the
        architecture has no global-average-pool head)."""
        p_all, types_all, cams_all = [], [], []
        explain = heatmaps and hasattr(self.model, "feature_maps")
        for i in range(0, len(images_u8), self.batch_size):
            x = to_model_input(torch.from_numpy(np.ascontiguousarray(images_u8[i:i + self.batch_size])),
                               self.mean, self.std).to(self.device)
            if explain:
                features = self.model.feature_maps(x)
                logits = self.model.head(features.mean(dim=(2, 3)))
            else:
                logits = self.model(x)
            p, types = tumor_probability(logits, self.temperature)
            p_all.append(p.cpu().numpy())
            if types is not None:
                types_all.append(types.cpu().numpy())
            if explain:
                cams = tumor_activation_map(features, self.model.head.weight, types, x.shape[-1])
                cams_all.append(cams.cpu().numpy())
        empty = np.zeros(0, dtype=np.float32)
        return ((np.concatenate(p_all) if p_all else empty),
                (np.concatenate(types_all) if types_all else None),
                (np.concatenate(cams_all) if cams_all else None))

    def label(self, p_tumor: float) -> str:
        return "tumor" if p_tumor >= self.threshold else "no_tumor"

    def predict_files(self, paths: list[str], heatmaps: bool = False) -> list[Prediction]:
        """Score image files; each unreadable one gets its error and the rest are still answered."""
        return self._predict([str(p) for p in paths], [lambda p=p: decode_image(p) for p in paths], heatmaps)

    def predict_uploads(self, uploads: list[tuple[str, bytes]], heatmaps: bool = False) -> list[Prediction]:
        """Score files held in memory as (name, bytes): uploads are never written to disk."""
        return self._predict([name for name, _ in uploads],
                             [lambda b=blob: decode_image(io.BytesIO(b)) for _, blob in uploads], heatmaps)

    def _predict(self, names: list[str], decoders: list, heatmaps: bool) -> list[Prediction]:
        results = [Prediction(path=n) for n in names]
        for start in range(0, len(results), self.batch_size):
            arrays, ok = [], []
            for r, decode in zip(results[start:start + self.batch_size], decoders[start:start + self.batch_size]):
                try:
                    arrays.append(preprocess(decode(), self.preprocess))
                    ok.append(r)
                except ImageReadError as e:
                    r.error = str(e)
            if not ok:
                continue
            p_tumor, types, cams = self.predict_arrays(np.stack(arrays), heatmaps)
            for j, r in enumerate(ok):
                r.tumor_probability = float(p_tumor[j])
                r.prediction = self.label(r.tumor_probability)
                if types is not None:
                    r.type_probabilities = {n: float(v) for n, v in zip(self.class_names, types[j])}
                if heatmaps:
                    r.image = arrays[j]
                    r.heatmap = None if cams is None else cams[j]
        return results
