"""Model files: weights plus JSON metadata, in one file, loaded without pickle.

Two formats carry the same metadata (as a MONAI bundle does: architecture, input size, channels,
preprocessing, normalisation, class names, output kind, operating threshold, training-data fingerprint,
validation metrics, package version, training history):

  .safetensors  what `train` writes: float16 weights, metadata as JSON in the header.
  .onnx         what `export` writes and the runtime runs (ONNX Runtime, no PyTorch): the network as an
                ONNX graph with float16 weights named by their PyTorch state-dict keys, metadata as JSON in
                the model's metadata_props. The bundled default model is one of these.

Reading metadata needs neither PyTorch nor pickle; a model file from a stranger cannot run code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from braintriage import __version__
from braintriage.atomic_files import written_atomically

if TYPE_CHECKING:  # imported where used: reading metadata must stay cheap
    import numpy as np

FORMAT_NAME = "braintriage-model"
FORMAT_VERSION = 1
METADATA_KEY = "braintriage"
BUNDLED_MODEL = Path(__file__).parent / "assets" / "default-model.onnx"
ONNX_PREFIX = "m."  # the exported wrapper holds the network as `m`
# What an exported network with a global-average-pool head returns, by name (export writes them, the runtime
# reads them): logits, the last feature maps, and the penultimate stage pooled over space and over each quarter.
EXPLAINABLE_OUTPUTS = ("logits", "features", "penultimate_features", "penultimate_quarters")


class ModelFileError(ValueError):
    pass


MAX_INPUT_SIZE = 1024  # pixels a side; 200 is usual. A larger claim is a broken or hostile file.


def _check(raw: str, path) -> dict:
    """Parse and validate a model file's metadata against one schema before anything uses it: types, ranges,
    finite numbers, the class list. A wrong field is a ModelFileError that names it."""
    try:
        meta = json.loads(raw)
    except (TypeError, ValueError):
        raise ModelFileError(f"{path}: the model metadata is not JSON") from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: the model metadata is not a JSON object")
    if meta.get("format") != FORMAT_NAME or meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: unsupported model format {meta.get('format')} v{meta.get('format_version')}")
    for field, problem in _schema_problems(meta):
        raise ModelFileError(f"{path}: invalid model metadata: {field} {problem}")
    return meta


def _number(value, low: float = -math.inf, high: float = math.inf, low_open: bool = False) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and (value > low if low_open else value >= low) and value <= high)


def _schema_problems(meta: dict):
    """(field, what is wrong) for each field that breaks the schema, in order; empty when the metadata holds."""
    def get(*keys):
        node = meta
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                return None
            node = node[k]
        return node

    if not isinstance(meta.get("architecture"), str):
        yield "architecture", "must be a network name"
    if get("input", "channels") not in (1, 3):
        yield "input.channels", "must be 1 or 3"
    size = get("input", "preprocess", "size")
    if not (isinstance(size, int) and not isinstance(size, bool) and 16 <= size <= MAX_INPUT_SIZE):
        yield "input.preprocess.size", f"must be a whole number of pixels from 16 to {MAX_INPUT_SIZE}"
    members = get("ensemble", "members")
    norms = ([m.get("normalization") if isinstance(m, dict) else None for m in members]
             if isinstance(members, list) else [get("input", "normalization")])
    for norm in norms:
        norm = norm if isinstance(norm, dict) else {}
        if not _number(norm.get("mean")):
            yield "input.normalization.mean", "must be a finite number"
        if not _number(norm.get("std"), 0, low_open=True):
            yield "input.normalization.std", "must be a finite number above 0"
    if meta.get("output") not in ("softmax", "sigmoid"):
        yield "output", "must be softmax or sigmoid"
    names = meta.get("class_names")
    if not (isinstance(names, list) and len(names) >= 2 and all(isinstance(n, str) for n in names)
            and names[0] == "no_tumor"):
        yield "class_names", "must be a list of at least two names starting with no_tumor"
    if not _number(meta.get("threshold"), 0, 1, low_open=True):
        yield "threshold", "must be a finite number in (0, 1]"
    if "temperature" in meta and not _number(meta["temperature"], 0, low_open=True):
        yield "temperature", "must be a finite number above 0"
    if meta.get("ood") is not None:
        yield from _guard_problems(meta["ood"])
    band = meta.get("uncertain_band")
    if band is not None:
        threshold = meta.get("threshold")
        if not (isinstance(band, dict) and _number(band.get("low"), 0, 1) and _number(band.get("high"), 0, 1)
                and _number(threshold) and band["low"] <= threshold <= band["high"]):
            yield "uncertain_band", "must be {low, high} in [0, 1] with low <= threshold <= high"
    shown = meta.get("type_display")
    if shown is not None and not (isinstance(shown, dict) and _number(shown.get("min_probability"), 0, 1)):
        yield "type_display", "must be {min_probability} in [0, 1]"


GUARD_LAYERS = ("last_stage", "penultimate_stage", "penultimate_quarters")  # pooled maps a guard may read


def _guard_problems(guard: Any) -> Iterator[tuple[str, str]]:
    """The out-of-distribution guard, and each it alarms together with ("also"): an object with a finite
    threshold above 0, reading known pooled maps."""
    also = guard.get("also", []) if isinstance(guard, dict) else []
    if not isinstance(also, list):
        yield "ood.also", "must be a list"
        return
    if isinstance(guard, dict) and "familiar_below" in guard and not _number(guard["familiar_below"], 0,
                                                                            low_open=True):
        yield "ood.familiar_below", "must be a finite number above 0"  # the familiarity rule (verdicts.is_familiar)
    if isinstance(guard, dict) and "familiar_percentile" in guard and not _number(guard["familiar_percentile"], 0,
                                                                                 100, low_open=True):
        yield "ood.familiar_percentile", "must be a number in (0, 100]"
    for name, g in [("ood", guard), *((f"ood.also[{k}]", g) for k, g in enumerate(also))]:
        if not isinstance(g, dict):
            yield name, "must be an object"
            continue
        layers = g.get("layers", ["last_stage"])  # guards fitted before there was a choice read the last stage
        if not _number(g.get("threshold"), 0, low_open=True):
            yield f"{name}.threshold", "must be a finite number above 0"
        if not (isinstance(layers, list) and layers and all(layer in GUARD_LAYERS for layer in layers)):
            yield f"{name}.layers", f"must be a non-empty list of {', '.join(GUARD_LAYERS)}"


def read_metadata(path: str | Path = BUNDLED_MODEL) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    if path.suffix == ".onnx":
        return _check(_onnx_metadata(path), path)
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
    except Exception as e:  # safetensors raises its own error types for a bad header
        raise ModelFileError(f"{path}: not a safetensors model file ({e})") from None
    if raw is None:
        raise ModelFileError(f"{path}: safetensors file without braintriage metadata")
    return _check(raw, path)


def _onnx_metadata(path: Path) -> str:
    """The braintriage metadata of an .onnx file, read from its top-level protobuf fields: ModelProto field 14
    is metadata_props, entries of {1: key, 2: value}. The graph (field 7, the weights) is skipped unread and
    the onnx package is not imported: a cold `predict` saves both (about 70 ms here)."""
    data = path.read_bytes()
    try:
        props = dict(_string_pairs(entry) for field, entry in _fields(data) if field == 14)
    except (IndexError, ValueError, UnicodeDecodeError):
        raise ModelFileError(f"{path}: not an ONNX model file (malformed protobuf)") from None
    if METADATA_KEY not in props:
        raise ModelFileError(f"{path}: ONNX file without braintriage metadata")
    return props[METADATA_KEY]


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[i]  # IndexError past the end: malformed
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if byte < 0x80:
            return value, i
        if shift > 63:
            raise ValueError("varint too long")


def _fields(data: bytes):
    """(field number, bytes) of each length-delimited field of one protobuf message; other wire types skipped."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        wire = key & 7
        if wire == 0:
            _, i = _varint(data, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = _varint(data, i)
            if i + n > len(data):
                raise ValueError("field past the end")
            yield key >> 3, data[i:i + n]
            i += n
        else:
            raise ValueError(f"wire type {wire}")
    if i != len(data):
        raise ValueError("truncated")


def _string_pairs(entry: bytes) -> tuple[str, str]:
    fields = dict(_fields(entry))
    return fields.get(1, b"").decode(), fields.get(2, b"").decode()


def member_prefix(k: int) -> str:
    """How an ensemble's graph names what belongs to member k (k >= 1; the first member keeps its own names)."""
    return f"member{k}/"


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file, hex: which exact model answered (results carry its first 12 digits), or which version of
    a file a training read (a teacher, an --upweight list)."""
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def describe_model_file(path: str | Path) -> dict:
    """What a model file records of another it was trained with (its teacher, or the model it started from):
    which file it was, and what it took."""
    metadata = read_metadata(path)
    return {"file": Path(path).name, "sha256": file_digest(path), "architecture": metadata["architecture"],
            "image_size": metadata["input"]["preprocess"]["size"]}


def model_name(meta: dict[str, Any]) -> str:
    """The network(s) a model file holds, for labels: `resnet18-w32`, or `ensemble of resnet18-w32 + ...`."""
    members = meta.get("ensemble", {}).get("members")
    return f"ensemble of {' + '.join(m['architecture'] for m in members)}" if members else meta["architecture"]


def onnx_initializers(path: str | Path, member: int = 0) -> dict[str, np.ndarray]:
    """The weights of an exported model (or of member `member` of an ensemble) as float32 numpy arrays, by
    PyTorch state-dict key; int8 weights are dequantised with their per-channel scales."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    prefix = ONNX_PREFIX if member == 0 else member_prefix(member) + ONNX_PREFIX
    model = onnx.load(str(path), load_external_data=False)
    arrays = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    out = {}
    for name, a in arrays.items():
        if not name.startswith(prefix) or name.endswith(("__scale", "__zero_point")):
            continue
        if a.dtype == np.int8 and name + "__scale" in arrays:
            a = a * arrays[name + "__scale"].reshape(-1, *[1] * (a.ndim - 1))
        out[name[len(prefix):]] = a.astype(np.float32) if a.dtype.kind == "f" else a
    return out


def update_metadata(path: str | Path, output: str | Path, changes: dict[str, Any]) -> dict[str, Any]:
    """Write a copy of a model file (either format) with some metadata keys replaced; weights untouched."""
    path, output = Path(path), Path(output)
    if output.suffix != path.suffix:  # the copy keeps the format: a .safetensors named .onnx would not load
        raise ModelFileError(f"{output.name}: a copy of {path.name} keeps its format; name it *{path.suffix}")
    meta = {**read_metadata(path), **changes}
    if path.suffix == ".onnx":
        import onnx

        model = onnx.load(str(path))
        for prop in model.metadata_props:
            if prop.key == METADATA_KEY:
                prop.value = json.dumps(meta)
        with written_atomically(output) as tmp:
            onnx.save(model, str(tmp))
    else:
        from safetensors.numpy import load_file, save_file

        tensors = load_file(str(path))
        with written_atomically(output) as tmp:
            save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(meta)})
    return meta


def save_model(path: str | Path, model, metadata: dict[str, Any], weights_dtype=None) -> None:
    """Write a .safetensors model file: weights (floating tensors as float16) and metadata, atomically."""
    import torch
    from safetensors.torch import save_file

    weights_dtype = weights_dtype or torch.float16
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.to(weights_dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in model.state_dict().items()}
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "package_version": __version__,
            "weights_dtype": str(weights_dtype).removeprefix("torch."), **metadata}
    with written_atomically(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(meta)})


def load_model(path: str | Path = BUNDLED_MODEL):
    """The PyTorch network of a model file (either format), float32 weights, in eval mode; and its metadata."""
    import torch

    from braintriage.models import build_model

    path = Path(path)
    meta = read_metadata(path)
    if "ensemble" in meta:  # PyTorch would see the first member alone
        raise ModelFileError(f"{path}: an ensemble of {len(meta['ensemble']['members'])} networks runs on ONNX "
                             "Runtime only; load one of its members in PyTorch instead")
    model = build_model(meta["architecture"], in_channels=meta["input"]["channels"],
                        num_outputs=len(meta["class_names"]) if meta["output"] == "softmax" else 1,
                        image_size=meta["input"]["preprocess"]["size"])
    if path.suffix == ".onnx":
        state = {k: torch.from_numpy(v.copy()) for k, v in onnx_initializers(path).items()}
        for key, value in model.state_dict().items():
            if key.endswith("num_batches_tracked"):  # a training counter the ONNX graph does not carry
                state.setdefault(key, value)
    else:
        from safetensors import safe_open

        state = {}
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                t = f.get_tensor(key)
                state[key] = t.float() if t.is_floating_point() else t
    model.load_state_dict(state)
    return model.eval(), meta
