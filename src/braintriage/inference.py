"""The inference runtime: a model file in, P(tumor) per scan out. `predict`, `serve`, `evaluate` and the tests
all call `Predictor`, so every caller sees the same preprocessing, batching, threshold and heat map.

It needs no PyTorch: an .onnx model file (the bundled default) runs on ONNX Runtime, and everything around
the network (normalisation, probabilities, class activation maps) is numpy. A .safetensors file (straight from
`train`) runs on PyTorch, which comes with the `train` extra.

A file that cannot be read is answered with an error on its own row; the rest of the batch still runs.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from braintriage import ood, verdicts
from braintriage.modelfile import (BUNDLED_MODEL, EXPLAINABLE_OUTPUTS, file_digest, model_name, onnx_initializers,
                                  read_metadata)
from braintriage.preprocess import ImageReadError, PreprocessConfig, head_mask, preprocess
from braintriage.scans import ScanItem, Slice, items_from_paths
from braintriage.user_cache import user_cache_dir

SMOOTHING = 3  # slices in the moving average of a study's slice scores
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
DECODE_THREADS = max(2, min(CORES, 8))
# The network runs on chunks of MODEL_CHUNK images, one core each, MODEL_THREADS chunks at a time. On the 2-core
# CPU of benchmarks/inference.py (ad-hoc timings, decoding the 394 `Testing` files in the same pipeline), two
# single-threaded runs of 4 side by side scored 267-274 images/s, two-threaded runs 200-239: a small chunk's
# activations stay in the core's cache, and no thread spins waiting for another (starving the decoding).
MODEL_CHUNK = 4
MODEL_THREADS = max(1, min(CORES, 8))
OPTIMIZED_COPIES = 4  # fused copies of model files kept in the user's cache (optimized_session), newest first
DECODED, SCORED = "decoded", "scored"  # the steps of Predictor.predict_in_steps
NATIVE_VIEW_SIDE = 1024  # the enlarged view of a scan: its own resolution, up to this many pixels a side
TOP_SLICES = 3  # most suspicious slices reported per study


@dataclass
class Prediction:
    path: str  # as given, or found under a given folder
    tumor_probability: float | None = None
    prediction: str | None = None  # "tumor" or "no_tumor" at the model's threshold
    type_probabilities: dict[str, float] | None = None  # for a model trained on tumor types
    error: str | None = None
    image: np.ndarray | None = None  # the model's view of the scan (uint8), when heat maps were asked for
    heatmap: np.ndarray | None = None  # class activation map in [0, 1], same size as `image`
    study: str | None = None  # for a DICOM series, multi-frame file or NIfTI volume
    slices: int = 1
    top_slices: list[str] = field(default_factory=list)  # the most suspicious slices, most suspicious first
    slice_probabilities: list[float | None] | None = None  # per slice, in slice order (studies only)
    # Set when the input does not look like a brain MRI slice: the prediction is then not to be trusted
    # (the web app shows the warning instead of a verdict).
    warning: str | None = None
    reliable: bool = True  # False when the verdict rests only on inputs that are not like brain MRI
    verdict: str = verdicts.ERROR  # one of verdicts.WORKLIST_ORDER: what the scan's reader acts on
    shown_type: str | None = None  # the tumor type to show (verdicts.shown_type), or "type uncertain"
    shown_slice: str | None = None  # a study: the label of the slice `image` shows (its most suspicious)
    slice_labels: list[str] | None = None  # a study: every slice's label, in slice order
    # For the clinic app's screen only (scans.ScanItem): never in the CLI table, a CSV file or a log.
    description: str | None = None
    identifiers: dict[str, str] | None = None
    suspicion: str | None = None  # the score in words (verdicts.suspicion)
    # With heat maps asked for: the slice `image` shows, to be decoded again at its own resolution only when an
    # enlarged view is wanted (native_view), and for a study every slice as the model saw it (None: unreadable).
    shown_source: Slice | None = field(default=None, repr=False)
    slice_images: list[np.ndarray | None] | None = None

    @property
    def predicted_type(self) -> str | None:
        if not self.type_probabilities:
            return None
        return max(self.type_probabilities, key=self.type_probabilities.get)


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
        options.intra_op_num_threads = 1  # the Predictor runs chunks side by side instead (MODEL_THREADS)
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


def optimized_session(path: Path, options) -> "onnxruntime.InferenceSession":
    """An ONNX Runtime session of a model file, its graph's fusions (Conv + BatchNorm + activation and the like)
    done once and kept in the user's cache: creating a session from the fused copy took 13 ms instead of 89 on
    the 2-core CPU of benchmarks/inference.py, most of a cold `predict`'s time after imports. The copy is made at
    ORT_ENABLE_EXTENDED, which is the same on every CPU; the memory-layout step that depends on the CPU still runs
    at every load. It is keyed by the file's path, size and modification time and by the ONNX Runtime version; a
    copy that does not load is made again; where the cache cannot be written, sessions start from the file."""
    import hashlib

    import onnxruntime as ort

    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{ort.__version__}".encode()).hexdigest()
    fused = user_cache_dir() / "onnxruntime" / f"{path.stem}-{key[:16]}.onnx"
    providers = ["CPUExecutionProvider"]
    if fused.exists():
        try:
            return ort.InferenceSession(str(fused), options, providers=providers)
        except Exception:  # noqa: BLE001  a damaged copy: made again below
            fused.unlink(missing_ok=True)
    session = ort.InferenceSession(str(path), options, providers=providers)
    partial = fused.with_suffix(f".{os.getpid()}.partial")
    try:
        fused.parent.mkdir(parents=True, exist_ok=True)
        saving = ort.SessionOptions()
        saving.log_severity_level = 3
        saving.add_session_config_entry("session.disable_quant_qdq", "1")  # as OnnxBackend's own session
        saving.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        saving.optimized_model_filepath = str(partial)
        ort.InferenceSession(str(path), saving, providers=providers)
        os.replace(partial, fused)  # atomic: another process never reads half a copy
        copies = sorted(fused.parent.glob("*.onnx"), key=lambda f: f.stat().st_mtime, reverse=True)
        for old in copies[OPTIMIZED_COPIES:]:  # the cache stays bounded, whatever number of models comes by
            old.unlink(missing_ok=True)
    except Exception:  # noqa: BLE001  a read-only or full disk: no copy, nothing lost
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
    return session


class TorchBackend:
    """Runs a .safetensors model file on PyTorch (the `train` extra)."""

    def __init__(self, path: Path):
        import torch

        from braintriage.modelfile import load_model

        self.torch = torch
        self.model, _ = load_model(path)  # refuses an ensemble, which runs on ONNX Runtime only
        self.explainable = hasattr(self.model, "features_with_penultimate")
        self.head_weight = self.model.head.weight.detach().numpy() if self.explainable else None
        self.outputs = list(EXPLAINABLE_OUTPUTS) if self.explainable else ["logits"]
        self.parallel_runs = 1  # PyTorch spreads one call over all cores itself

    def run(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray | None, ...]:
        with self.torch.inference_mode():
            t = self.torch.from_numpy(inputs["image"])
            if not self.explainable:
                return self.model(t).numpy(), None, None, None
            features, penultimate, quarters = self.model.features_with_penultimate(t)
            return (self.model.head(features.mean(dim=(2, 3))).numpy(), features.numpy(), penultimate.numpy(),
                    quarters.numpy())


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


class Predictor:
    def __init__(self, model_path: str | Path | None = None, batch_size: int = 32):
        self.model_path = Path(model_path) if model_path else BUNDLED_MODEL
        self.metadata = read_metadata(self.model_path)
        self.backend = (OnnxBackend if self.model_path.suffix == ".onnx" else TorchBackend)(self.model_path)
        self.batch_size = batch_size
        # Slices are decoded several at a time (PIL and numpy release the GIL), in their order.
        self._decoder = ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="decode")
        self._model_runs = ThreadPoolExecutor(max_workers=self.backend.parallel_runs, thread_name_prefix="model")
        # One input per network: a plain model has `image`; an ensemble one per member, each read with that
        # member's preprocessing and normalisation. The first is the primary one: the heat map, the guard and the
        # image the web app shows are its.
        members = self.metadata.get("ensemble", {}).get("members") or [
            {"input": "image", **{k: self.metadata["input"][k] for k in ("preprocess", "normalization")}}]
        self.input_names = [m["input"] for m in members]
        self.input_preprocess = [PreprocessConfig.from_dict(m["preprocess"]) for m in members]
        self.input_normalization = [(m["normalization"]["mean"], m["normalization"]["std"]) for m in members]
        self.preprocess = self.input_preprocess[0]
        self.rules = ReadingRules.from_metadata(self.metadata)
        self.temperature = float(self.metadata.get("temperature", 1.0))
        self.ood = self.metadata.get("ood")  # out-of-distribution guard parameters, when calibrated
        self._ood_arrays = ood.as_arrays(self.ood) if self.ood else None
        # The pooled feature maps the network offers (an ONNX file exported before there were quarters has the
        # penultimate stage's mean, one exported before that only the last stage), and those the guard reads:
        # those it was fitted on, or for a new fit those `ood.DESIGNS` name.
        self.available_guard_layers = (("penultimate_stage", "penultimate_quarters", "last_stage")
                                       if "penultimate_quarters" in self.backend.outputs
                                       else ("penultimate_stage", "last_stage")
                                       if "penultimate_features" in self.backend.outputs else ("last_stage",))
        self.guard_layers = ood.all_layers(self.ood)
        # Test-time augmentation the model was validated with: "horizontal_flip" averages the logits of the
        # image and its mirror image (the brain is close to left-right symmetric; never top-bottom).
        self.test_time_augmentation = list(self.metadata.get("test_time_augmentation", []))
        unknown = set(self.test_time_augmentation) - {"horizontal_flip"}
        if unknown:
            raise ValueError(f"{self.model_path}: unknown test-time augmentation {sorted(unknown)}")

    @functools.cached_property
    def model_id(self) -> str:
        """What a result names as its model: the network and the first 12 hex digits of the file's SHA-256
        (hashed when first asked for: a run that writes no table and no CSV never reads the file twice)."""
        return f"{model_name(self.metadata)} {file_digest(self.model_path)[:12]}"

    def predict_arrays(self, images_u8: np.ndarray | list[np.ndarray], heatmaps: bool = False
                       ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Preprocessed uint8 images (N, size, size) -> P(tumor) (N,), type probabilities (N, 4) or None,
        and with `heatmaps` the class activation maps (N, size, size) in [0, 1] (None where the
        architecture has no global-average-pool head). An ensemble takes a list: the same N scans preprocessed
        for each of its inputs (`input_preprocess`), in order."""
        return self._run(images_u8, heatmaps, self.guard_layers)[:3]

    def pooled_features(self, images_u8: np.ndarray | list[np.ndarray], layers: tuple[str, ...] | None = None
                        ) -> np.ndarray | None:
        """Feature maps averaged over space, side by side (N, C): what the out-of-distribution guard looks at.
        `layers` defaults to those of this model's guard (`guard_layers`)."""
        pooled = self.pooled_by_layer(images_u8, layers)
        return None if pooled is None else np.concatenate(list(pooled.values()), axis=1)

    def pooled_by_layer(self, images_u8: np.ndarray | list[np.ndarray], layers: tuple[str, ...] | None = None
                        ) -> dict[str, np.ndarray] | None:
        """`pooled_features` by layer name, in the order of `layers`; None where the network lacks one."""
        return self._run(images_u8, False, layers or self.guard_layers)[3]

    def _per_input(self, images_u8: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
        arrays = [images_u8] if isinstance(images_u8, np.ndarray) else list(images_u8)
        if len(arrays) != len(self.input_names):
            raise ValueError(f"this model has {len(self.input_names)} inputs, each with its own preprocessing "
                             f"({', '.join(c.key() for c in self.input_preprocess)}): give one image array per input")
        return arrays

    def _run(self, images_u8: np.ndarray | list[np.ndarray], heatmaps: bool, guard_layers: tuple[str, ...]):
        arrays = self._per_input(images_u8)
        p_all, types_all, cams_all, pooled_all = [], [], [], {name: [] for name in guard_layers}
        for i in range(0, len(arrays[0]), self.batch_size):
            x = {name: (((a[i:i + self.batch_size].astype(np.float32) / 255.0 - mean) / std)[:, None]
                        .astype(np.float32))
                 for name, a, (mean, std) in zip(self.input_names, arrays, self.input_normalization)}
            logits, features, penultimate, quarters = self._run_network(x)
            if "horizontal_flip" in self.test_time_augmentation:
                # Heat maps and the out-of-distribution guard keep the unflipped image's features.
                mirrored = {name: np.ascontiguousarray(v[..., ::-1]) for name, v in x.items()}
                logits = (logits + self._run_network(mirrored)[0]) / 2
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

    def _run_network(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray | None, ...]:
        """`backend.run` on a batch, in chunks of MODEL_CHUNK images run side by side (`backend.parallel_runs`);
        each image's outputs are those of running it alone."""
        n = len(next(iter(inputs.values())))
        if self.backend.parallel_runs <= 1 or n <= MODEL_CHUNK:
            return self.backend.run(inputs)
        chunks = [{name: a[k:k + MODEL_CHUNK] for name, a in inputs.items()} for k in range(0, n, MODEL_CHUNK)]
        outputs = list(self._model_runs.map(self.backend.run, chunks))
        return tuple(None if outputs[0][o] is None else np.concatenate([out[o] for out in outputs])
                     for o in range(len(outputs[0])))

    @property
    def threshold(self) -> float:
        return self.rules.threshold

    @property
    def band(self) -> tuple[float, float]:
        return self.rules.band

    @property
    def class_names(self) -> list[str]:
        return self.rules.class_names

    def label(self, p_tumor: float) -> str:
        return self.rules.label(p_tumor)

    def predict_files(self, paths: list[str], heatmaps: bool = False) -> list[Prediction]:
        """One result per file path (a DICOM multi-frame file is one study); unreadable files get an error."""
        return self.predict_items([items_from_paths([p])[0] for p in paths], heatmaps)

    def predict_items(self, items: list[ScanItem], heatmaps: bool = False) -> list[Prediction]:
        """Score every slice of every item, in batches across items, then summarise each item. A study's
        verdict is the maximum of its slice scores smoothed over SMOOTHING neighbouring slices (one bright
        artefact on a single slice counts less than evidence on adjacent slices), with its TOP_SLICES most
        suspicious slices."""
        *_, results = self.predict_in_steps(items, heatmaps)
        return results

    def _decode(self, slice_: Slice) -> tuple[list[np.ndarray], float] | str:
        """One slice decoded and preprocessed for each model input, with its frame level (as decoded: padding
        would hide a bright frame); or the error message."""
        try:
            image = slice_.load()
            return [preprocess(image, config) for config in self.input_preprocess], ood.border_level(image)
        except ImageReadError as e:
            return str(e)

    def predict_in_steps(self, items: list[ScanItem], heatmaps: bool = False) -> Iterator[str | list[Prediction]]:
        """`predict_items` one batch of slices at a time: yields DECODED when a batch is decoded (the next step
        runs the model on it), SCORED when it is scored, and the results last. The web app decodes outside
        its model lock and holds the lock for one batch at a time, so a 1,000-slice study lets a single scan
        through between its batches."""
        slices = [SliceResults.empty(len(it.slices)) for it in items]
        todo = [(i, j) for i, it in enumerate(items) if it.error is None for j in range(len(it.slices))]
        batches = [todo[k:k + self.batch_size] for k in range(0, len(todo), self.batch_size)]

        def decoding(batch):  # started ahead: the next batch decodes while the model scores this one
            return [self._decoder.submit(self._decode, items[i].slices[j]) for i, j in batch]

        upcoming = decoding(batches[0]) if batches else []
        for b, batch in enumerate(batches):
            decoded_batch = [f.result() for f in upcoming]
            upcoming = decoding(batches[b + 1]) if b + 1 < len(batches) else []
            ok = []
            for (i, j), decoded in zip(batch, decoded_batch):
                if isinstance(decoded, str):
                    slices[i].errors[j] = decoded
                else:
                    ok.append(((i, j), decoded))
            if not ok:
                continue
            yield DECODED
            self._score_batch(ok, slices, heatmaps)
            yield SCORED
        yield [summarise(item, found, self.rules) for item, found in zip(items, slices)]

    def _score_batch(self, decoded: list[tuple[tuple[int, int], tuple[list[np.ndarray], float]]],
                     slices: list[SliceResults], heatmaps: bool) -> None:
        """Run the network and the guard on one batch of decoded slices ((item, slice) index, (one image per
        model input, frame level)), and file each slice's score, view and warning under its item."""
        stacked = [np.stack(per_input) for per_input in zip(*(images for _, (images, _) in decoded))]
        borders = [border for _, (_, border) in decoded]
        p_tumor, types, cams, pooled = self._run(stacked, heatmaps, self.guard_layers)
        warnings = ood.warnings_for(stacked[0], pooled, self._ood_arrays, borders)
        for k, ((i, j), _) in enumerate(decoded):
            slices[i].alarms[j] = warnings[k]
            if not np.isfinite(p_tumor[k]):  # a NaN is an error, never a verdict
                slices[i].errors[j] = "the model gave no valid score (not a number): its file may be broken"
                continue
            slices[i].scores[j] = float(p_tumor[k])
            slices[i].views[j] = (stacked[0][k] if heatmaps else None, None if cams is None else cams[k],
                                  None if types is None else types[k])


@dataclass(frozen=True)
class ReadingRules:
    """How a model file says its scores are read: the threshold, the uncertain band and the type display rule
    (operating_point.py; a model without a band has two outcomes), and the names of its classes."""
    threshold: float
    band: tuple[float, float]
    type_min_probability: float | None
    class_names: list[str]

    @classmethod
    def from_metadata(cls, metadata: dict) -> "ReadingRules":
        threshold = float(metadata["threshold"])
        band = metadata.get("uncertain_band") or {"low": threshold, "high": threshold}
        return cls(threshold, (float(band["low"]), float(band["high"])),
                   (metadata.get("type_display") or {}).get("min_probability"), metadata["class_names"])

    def label(self, p_tumor: float) -> str:
        return "tumor" if p_tumor >= self.threshold else "no_tumor"


@dataclass
class SliceResults:
    """What scoring found for each slice of one item, by slice index: a score or an error, and for a scored
    slice its view (image, heat map, type probabilities) and out-of-distribution warning (None: looks like MRI)."""
    scores: list[float | None]
    errors: list[str | None]
    views: dict[int, tuple] = field(default_factory=dict)
    alarms: dict[int, str | None] = field(default_factory=dict)

    @classmethod
    def empty(cls, n: int) -> "SliceResults":
        return cls([None] * n, [None] * n)


def summarise(item: ScanItem, found: SliceResults, rules: ReadingRules) -> Prediction:
    """One item's result from its slices' scores: a study's verdict is its most suspicious slice after
    smoothing over neighbours, with slices that do not look like brain MRI left out (`usable_slices`)."""
    r = Prediction(path=item.path, study=item.study, slices=len(item.slices), description=item.description,
                   identifiers=item.identifiers)
    if item.error or not item.slices:
        r.error = item.error or "no images found"
        return r
    scores = found.scores
    readable = [j for j, score in enumerate(scores) if score is not None]
    if not readable:
        first = next(e for e in found.errors if e)
        r.error = first if len(scores) == 1 else f"none of {len(scores)} slices could be read: {first}"
        return r
    valid = usable_slices(readable, found.alarms, r)
    p = np.array([scores[j] for j in valid])
    smoothed = smooth(p) if item.is_study else p
    order = np.argsort(-smoothed, kind="stable")
    best = valid[order[0]]
    r.tumor_probability = float(smoothed[order[0]])
    r.prediction = rules.label(r.tumor_probability)
    image, cam, types = found.views[best]
    if types is not None:
        r.type_probabilities = {n: float(v) for n, v in zip(rules.class_names, types)}
    r.image, r.heatmap = image, cam
    if image is not None:
        r.shown_source = item.slices[best]
    if item.is_study:
        describe_study(r, item, found, [valid[k] for k in order[:TOP_SLICES]], best, len(readable))
    complete = len(scores) == len(readable)
    r.verdict = verdicts.verdict(r.tumor_probability, r.reliable, rules.band, complete)
    r.suspicion = verdicts.suspicion(r.tumor_probability, rules.band)
    r.shown_type = verdicts.shown_type(r.verdict, r.type_probabilities, rules.type_min_probability)
    return r


def usable_slices(readable: list[int], alarms: dict[int, str | None], r: Prediction) -> list[int]:
    """The slices a verdict rests on: those that look like brain MRI, with a warning on `r` for the others; if
    none does (or the one image of a plain item does not), all of them, and `r` is marked unreliable."""
    in_distribution = [j for j in readable if alarms.get(j) is None]
    if in_distribution:
        if len(in_distribution) < len(readable):
            r.warning = f"{len(readable) - len(in_distribution)} of {len(readable)} slices left out: not like brain MRI"
        return in_distribution
    r.reliable = False
    r.warning = alarms[readable[0]] if len(readable) == 1 else \
        f"none of {len(readable)} slices looks like a brain MRI slice: prediction unreliable"
    return readable


def describe_study(r: Prediction, item: ScanItem, found: SliceResults, top: list[int], best: int,
                   readable: int) -> None:
    """A study's own fields: its most suspicious slices, every slice's score, label and view, and how many
    slices could not be read."""
    r.top_slices = [item.slices[j].label for j in top]
    r.slice_probabilities = found.scores
    r.shown_slice = item.slices[best].label
    r.slice_labels = [s.label for s in item.slices]
    if r.image is not None:
        r.slice_images = [found.views[j][0] if j in found.views else None for j in range(len(item.slices))]
    failed = len(found.scores) - readable
    if failed:
        r.error = f"{failed} of {len(found.scores)} slices could not be read; scored on the rest"


def native_view(slice_: Slice) -> np.ndarray | None:
    """A slice as decoded, for the enlarged view: its own resolution, scaled down to NATIVE_VIEW_SIDE."""
    try:
        image = slice_.load()
    except ImageReadError:
        return None
    image.thumbnail((NATIVE_VIEW_SIDE, NATIVE_VIEW_SIDE))
    return np.asarray(image.convert("L"))


def smooth(p: np.ndarray, window: int = SMOOTHING) -> np.ndarray:
    """Moving average along the slice axis, edges padded with the end values."""
    if len(p) < 2 or window < 2:
        return p
    half = window // 2
    padded = np.pad(p, half, mode="edge")
    return np.convolve(padded, np.ones(window) / window, mode="valid")
