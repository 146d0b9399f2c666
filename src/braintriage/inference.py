"""The inference runtime: a model file in, P(tumor) per scan out. `predict`, `serve`, `evaluate` and the tests
all call `Predictor`, so every caller sees the same preprocessing, batching, threshold and heat map.

It needs no PyTorch: an .onnx model file (the bundled default) runs on ONNX Runtime, and everything around
the network (normalisation, probabilities, class activation maps) is numpy. A .safetensors file (straight from
`train`) runs on PyTorch, which comes with the `train` extra.

A file that cannot be read is answered with an error on its own row; the rest of the batch still runs.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from braintriage.modelfile import BUNDLED_MODEL, onnx_initializers, read_metadata
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


class OnnxBackend:
    """Runs an exported model on ONNX Runtime (no PyTorch)."""

    def __init__(self, path: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.head_weight = (onnx_initializers(path).get("head.weight") if "features" in self.outputs else None)

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        out = self.session.run(None, {"image": x})
        return out[0], (out[1] if len(out) > 1 else None)


class TorchBackend:
    """Runs a .safetensors model file on PyTorch (the `train` extra)."""

    def __init__(self, path: Path):
        import torch

        from braintriage.modelfile import load_model

        self.torch = torch
        self.model, _ = load_model(path)
        self.explainable = hasattr(self.model, "feature_maps")
        self.head_weight = self.model.head.weight.detach().numpy() if self.explainable else None

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        with self.torch.inference_mode():
            t = self.torch.from_numpy(x)
            if not self.explainable:
                return self.model(t).numpy(), None
            features = self.model.feature_maps(t)
            return self.model.head(features.mean(dim=(2, 3))).numpy(), features.numpy()


def tumor_probability(logits: np.ndarray, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray | None]:
    """P(tumor) per image and, for a type model, the type probabilities (no tumor at index 0, so
    P(tumor) = 1 - P(no tumor)); a one-output model gives sigmoid P(tumor)."""
    z = logits.astype(np.float64) / temperature
    if z.shape[1] == 1:
        return 1.0 / (1.0 + np.exp(-z[:, 0])), None
    z = z - z.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return 1.0 - probs[:, 0], probs


def tumor_activation_map(features: np.ndarray, head_weight: np.ndarray, type_probs: np.ndarray | None,
                         size: int) -> np.ndarray:
    """Class activation maps (Zhou et al. 2016) of the evidence for a tumor, (B, size, size) in [0, 1].

    With a global-average-pool head each logit is a weighted sum of the pooled last feature maps, so the same
    weights applied before pooling show where the evidence lies. For a type model: the map of (logit of the
    most likely tumor type - logit of no tumor); for a binary model, of its one logit. Positive evidence only,
    scaled by its own maximum.
    """
    if type_probs is None:
        weights = np.repeat(head_weight[:1], len(features), axis=0)
    else:
        k = 1 + type_probs[:, 1:].argmax(axis=1)  # most likely tumor type
        weights = head_weight[k] - head_weight[0]
    cams = np.maximum(np.einsum("bc,bchw->bhw", weights, features), 0)
    out = np.zeros((len(cams), size, size), dtype=np.float32)
    for i, cam in enumerate(cams):
        up = np.asarray(Image.fromarray(cam.astype(np.float32), mode="F").resize((size, size), Image.BILINEAR))
        peak = up.max()
        out[i] = up / peak if peak > 0 else up
    return out


class Predictor:
    def __init__(self, model_path: str | Path | None = None, batch_size: int = 32):
        self.model_path = Path(model_path) if model_path else BUNDLED_MODEL
        self.metadata = read_metadata(self.model_path)
        self.backend = (OnnxBackend if self.model_path.suffix == ".onnx" else TorchBackend)(self.model_path)
        self.batch_size = batch_size
        self.preprocess = PreprocessConfig.from_dict(self.metadata["input"]["preprocess"])
        norm = self.metadata["input"]["normalization"]
        self.mean, self.std = norm["mean"], norm["std"]
        self.threshold = float(self.metadata["threshold"])
        self.temperature = float(self.metadata.get("temperature", 1.0))
        self.class_names = self.metadata["class_names"]

    def predict_arrays(self, images_u8: np.ndarray, heatmaps: bool = False
                       ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Preprocessed uint8 images (N, size, size) -> P(tumor) (N,), type probabilities (N, 4) or None,
        and with `heatmaps` the class activation maps (N, size, size) in [0, 1] (None where the
        architecture has no global-average-pool head)."""
        p_all, types_all, cams_all = [], [], []
        for i in range(0, len(images_u8), self.batch_size):
            batch = images_u8[i:i + self.batch_size].astype(np.float32) / 255.0
            x = ((batch - self.mean) / self.std)[:, None].astype(np.float32)
            logits, features = self.backend.run(x)
            p, types = tumor_probability(logits, self.temperature)
            p_all.append(p)
            if types is not None:
                types_all.append(types)
            if heatmaps and features is not None:
                cams_all.append(tumor_activation_map(features, self.backend.head_weight, types, x.shape[-1]))
        empty = np.zeros(0)
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

    def _predict(self, names: list[str], decoders: list[Callable[[], Image.Image]], heatmaps: bool
                 ) -> list[Prediction]:
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
