"""A model file's network, run on preprocessed images: ONNX Runtime for an .onnx file (the bundled default; no
PyTorch), PyTorch for a .safetensors file straight from `train`. Its outputs are read here as P(tumor), type
probabilities, class activation maps and the pooled feature maps the out-of-distribution guard reads, all in numpy.
Nothing here decodes a file: `inference.Predictor` feeds it scans.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from braintriage.atomic_files import written_atomically
from braintriage.modelfile import EXPLAINABLE_OUTPUTS, onnx_initializers
from braintriage.onnx_rewrite import fold_padding_in_file
from braintriage.preprocess import PreprocessConfig, head_mask
from braintriage.user_cache import user_cache_dir

if TYPE_CHECKING:  # ONNX Runtime is imported where a session is made
    import onnxruntime

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
# The network runs on chunks of MODEL_CHUNK images, one core each, MODEL_THREADS chunks at a time. On the 2-core
# CPU of benchmarks/inference.py (ad-hoc timings, decoding the 394 `Testing` files in the same pipeline), two
# single-threaded runs of 4 side by side scored 267-274 images/s, two-threaded runs 200-239: a small chunk's
# activations stay in the core's cache, and no thread spins waiting for another (starving the decoding).
MODEL_CHUNK = 4
MODEL_THREADS = max(1, min(CORES, 8))
OPTIMIZED_COPIES = 4  # fused copies of model files kept in the user's cache (optimized_session), newest first
REWRITES = "fold-padding"  # what the cached copies have been through: a copy made before a new rewrite is made again
POOLED_LAYERS = ("penultimate_stage", "penultimate_quarters", "last_stage")  # what the guard can read


class Network:
    """The network of a model file and how its outputs are read. One input per network: a plain model has
    `image`; an ensemble one per member, each read with that member's preprocessing and normalisation. The first
    is the primary one: the heat map, the guard and the image the web app shows are its."""

    def __init__(self, model_path: Path, metadata: dict, batch_size: int = 32):
        self.backend = (OnnxBackend if model_path.suffix == ".onnx" else TorchBackend)(model_path)
        self.batch_size = batch_size
        self._model_runs = ThreadPoolExecutor(max_workers=self.backend.parallel_runs, thread_name_prefix="model")
        members = metadata.get("ensemble", {}).get("members") or [
            {"input": "image", **{k: metadata["input"][k] for k in ("preprocess", "normalization")}}]
        self.input_names = [m["input"] for m in members]
        self.input_preprocess = [PreprocessConfig.from_dict(m["preprocess"]) for m in members]
        self.input_normalization = [(m["normalization"]["mean"], m["normalization"]["std"]) for m in members]
        self.temperature = float(metadata.get("temperature", 1.0))
        # The pooled feature maps the network offers: an ONNX file exported before there were quarters has the
        # penultimate stage's mean, one exported before that only the last stage.
        self.available_guard_layers = (POOLED_LAYERS if "penultimate_quarters" in self.backend.outputs
                                       else ("penultimate_stage", "last_stage")
                                       if "penultimate_features" in self.backend.outputs else ("last_stage",))
        # Test-time augmentation the model was validated with: "horizontal_flip" averages the logits of the
        # image and its mirror image (the brain is close to left-right symmetric; never top-bottom).
        self.test_time_augmentation = list(metadata.get("test_time_augmentation", []))
        unknown = set(self.test_time_augmentation) - {"horizontal_flip"}
        if unknown:
            raise ValueError(f"{model_path}: unknown test-time augmentation {sorted(unknown)}")

    def per_input(self, images_u8: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
        """The image arrays, one per network input; a plain model's single array is accepted as it is."""
        arrays = [images_u8] if isinstance(images_u8, np.ndarray) else list(images_u8)
        if len(arrays) != len(self.input_names):
            raise ValueError(f"this model has {len(self.input_names)} inputs, each with its own preprocessing "
                             f"({', '.join(c.key() for c in self.input_preprocess)}): give one image array per input")
        return arrays

    def run(self, images_u8: np.ndarray | list[np.ndarray], heatmaps: bool, guard_layers: tuple[str, ...]
            ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, dict[str, np.ndarray] | None]:
        """Preprocessed uint8 images (N, size, size), one array per input -> P(tumor) (N,), type probabilities
        (N, 4) or None, with `heatmaps` class activation maps (N, size, size) or None, and the pooled feature
        maps of `guard_layers` by name (None where the network lacks one), in batches of `batch_size`."""
        arrays = self.per_input(images_u8)
        p_all, types_all, cams_all, pooled_all = [], [], [], {name: [] for name in guard_layers}
        for i in range(0, len(arrays[0]), self.batch_size):
            x = {name: (((a[i:i + self.batch_size].astype(np.float32) / 255.0 - mean) / std)[:, None]
                        .astype(np.float32))
                 for name, a, (mean, std) in zip(self.input_names, arrays, self.input_normalization)}
            logits, features, penultimate, quarters = self.run_in_chunks(x)
            if "horizontal_flip" in self.test_time_augmentation:
                # Heat maps and the out-of-distribution guard keep the unflipped image's features.
                mirrored = {name: np.ascontiguousarray(v[..., ::-1]) for name, v in x.items()}
                logits = (logits + self.run_in_chunks(mirrored)[0]) / 2
            p, types = tumor_probability(logits, self.temperature)
            p_all.append(p)
            if types is not None:
                types_all.append(types)
            pooled = {"last_stage": None if features is None else features.mean(axis=(2, 3)),
                      "penultimate_stage": penultimate, "penultimate_quarters": quarters}
            for name in guard_layers:
                if pooled[name] is not None:
                    pooled_all[name].append(pooled[name])
            if heatmaps and features is not None:
                size = self.input_preprocess[0].size
                cams_all.append(tumor_activation_map(features, self.backend.head_weight, types, size,
                                                     arrays[0][i:i + self.batch_size]))
        empty = np.zeros(0)
        return ((np.concatenate(p_all) if p_all else empty),
                (np.concatenate(types_all) if types_all else None),
                (np.concatenate(cams_all) if cams_all else None),
                ({name: np.concatenate(v) for name, v in pooled_all.items()}
                 if p_all and all(pooled_all.values()) else None))

    def run_in_chunks(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray | None, ...]:
        """`backend.run` on a batch, in chunks of MODEL_CHUNK images run side by side (`backend.parallel_runs`);
        each image's outputs are those of running it alone."""
        n = len(next(iter(inputs.values())))
        if self.backend.parallel_runs <= 1 or n <= MODEL_CHUNK:
            return self.backend.run(inputs)
        chunks = [{name: a[k:k + MODEL_CHUNK] for name, a in inputs.items()} for k in range(0, n, MODEL_CHUNK)]
        outputs = list(self._model_runs.map(self.backend.run, chunks))
        return tuple(None if outputs[0][o] is None else np.concatenate([out[o] for out in outputs])
                     for o in range(len(outputs[0])))


class OnnxBackend:
    """Runs an exported model on ONNX Runtime (no PyTorch)."""

    def __init__(self, path: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        # Fold the int8 weights of an ensemble's later members (DequantizeLinear of constants) into float32 once,
        # at load, instead of on every run; without this the quantised member also loses its Conv+BatchNorm
        # fusion and an ensemble of two scores 85 instead of 136 images/s (benchmarks/inference.py).
        options.add_session_config_entry("session.disable_quant_qdq", "1")
        options.intra_op_num_threads = 1  # Network runs chunks side by side instead (MODEL_THREADS)
        self.session = optimized_session(path, options)
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.path = path
        self.parallel_runs = MODEL_THREADS  # InferenceSession.run is thread-safe and releases the GIL

    @functools.cached_property
    def head_weight(self) -> np.ndarray | None:
        """The classifier's weights, for heat maps: read from the file when the first map is asked for (it
        imports onnx, which a plain verdict does not need)."""
        return onnx_initializers(self.path).get("head.weight") if "features" in self.outputs else None

    def run(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray | None, ...]:
        """logits, last feature maps, penultimate stage pooled over space and over each quarter (None where the
        graph lacks them); `inputs` by input name (`image`, and one more per further member of an ensemble)."""
        out = dict(zip(self.outputs, self.session.run(None, inputs)))
        return out["logits"], out.get("features"), out.get("penultimate_features"), out.get("penultimate_quarters")


def optimized_session(path: Path, options) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session of a model file, its graph's fusions (Conv + BatchNorm + activation and the like)
    done once and kept in the user's cache: creating a session from the fused copy took 13 ms instead of 89 on
    the 2-core CPU of benchmarks/inference.py, most of a cold `predict`'s time after imports. The copy is made at
    ORT_ENABLE_EXTENDED, which is the same on every CPU, and then has its padding folded into its convolutions
    (onnx_rewrite.py: a fifth faster, the same numbers); the memory-layout step that depends on the CPU still runs
    at every load. It is keyed by the file's path, size and modification time, the ONNX Runtime version and
    REWRITES; a copy that does not load is made again; where the cache cannot be written, sessions start from the
    file."""
    import hashlib

    import onnxruntime as ort

    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{ort.__version__}|{REWRITES}"
                         .encode()).hexdigest()
    fused = user_cache_dir() / "onnxruntime" / f"{path.stem}-{key[:16]}.onnx"
    providers = ["CPUExecutionProvider"]
    if fused.exists():
        try:
            return ort.InferenceSession(str(fused), options, providers=providers)
        except Exception:  # noqa: BLE001  a damaged copy: made again below
            fused.unlink(missing_ok=True)
    try:
        fused.parent.mkdir(parents=True, exist_ok=True)
        saving = ort.SessionOptions()
        saving.log_severity_level = 3
        saving.add_session_config_entry("session.disable_quant_qdq", "1")  # as OnnxBackend's own session
        saving.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        with written_atomically(fused, suffix=".partial") as partial:  # another process never reads half a copy
            saving.optimized_model_filepath = str(partial)
            ort.InferenceSession(str(path), saving, providers=providers)
            fold_padding_in_file(partial)  # what ONNX Runtime leaves unfused (onnx_rewrite.py): same numbers
            session = ort.InferenceSession(str(partial), options, providers=providers)
        copies = sorted(fused.parent.glob("*.onnx"), key=lambda f: f.stat().st_mtime, reverse=True)
        for old in copies[OPTIMIZED_COPIES:]:  # the cache stays bounded, whatever number of models comes by
            old.unlink(missing_ok=True)
        return session
    except Exception:  # noqa: BLE001  a read-only or full disk: no copy, nothing lost
        return ort.InferenceSession(str(path), options, providers=providers)


class TorchBackend:
    """Runs a .safetensors model file on PyTorch (the `train` extra), on the GPU where there is one: what scores a
    training run's held-out images and fits its guard right after it trained (on a lent GPU machine the CPU side
    of that took longer than the training, session 54)."""

    def __init__(self, path: Path):
        import torch

        from braintriage.hardware import pick_device
        from braintriage.modelfile import load_model

        self.torch = torch
        self.device = pick_device("auto")
        model, _ = load_model(path)  # refuses an ensemble, which runs on ONNX Runtime only
        self.model = model.to(self.device)
        self.explainable = hasattr(self.model, "features_with_penultimate")
        self.head_weight = self.model.head.weight.detach().cpu().numpy() if self.explainable else None
        self.outputs = list(EXPLAINABLE_OUTPUTS) if self.explainable else ["logits"]
        self.parallel_runs = 1  # PyTorch spreads one call over all cores itself

    def run(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray | None, ...]:
        with self.torch.inference_mode():
            t = self.torch.from_numpy(inputs["image"]).to(self.device)
            if not self.explainable:
                return self.model(t).cpu().numpy(), None, None, None
            features, penultimate, quarters = self.model.features_with_penultimate(t)
            return tuple(out.cpu().numpy() for out in (self.model.head(features.mean(dim=(2, 3))), features,
                                                       penultimate, quarters))


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
                         size: int, images_u8: np.ndarray | None = None) -> np.ndarray:
    """Class activation maps (Zhou et al. 2016) of the evidence for a tumor, (B, size, size) in [0, 1].

    With a global-average-pool head each logit is a weighted sum of the pooled last feature maps, so the same
    weights applied before pooling show where the evidence lies. For a type model: the map of (logit of the
    most likely tumor type - logit of no tumor); for a binary model, of its one logit. Positive evidence only,
    scaled by its own maximum. With `images_u8` (the scans the maps are of) the map is zero outside the head
    (preprocess.head_mask): the padding and the background can never hold its peak.
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
        if images_u8 is not None:
            up = up * head_mask(images_u8[i])
        peak = up.max()
        out[i] = up / peak if peak > 0 else up
    return out
