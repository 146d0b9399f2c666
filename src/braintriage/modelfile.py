"""The model file: one .safetensors file holding the weights and, in its header, JSON metadata.

Metadata says everything needed to use the weights (as a MONAI bundle does): architecture, input size,
channels, preprocessing, normalisation, class names, output kind, operating threshold, training-data
fingerprint, validation metrics and the package version. Loading parses JSON and raw tensors only;
nothing is unpickled, so a model file from a stranger cannot run code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from braintriage import __version__
from braintriage.models import build_model

FORMAT_NAME = "braintriage-model"
FORMAT_VERSION = 1
METADATA_KEY = "braintriage"
BUNDLED_MODEL = Path(__file__).parent / "assets" / "default-model.safetensors"


class ModelFileError(ValueError):
    pass


def save_model(path: str | Path, model: torch.nn.Module, metadata: dict[str, Any],
               weights_dtype: torch.dtype = torch.float16) -> None:
    """Write weights (floating tensors stored as `weights_dtype`) and metadata, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.to(weights_dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in model.state_dict().items()}
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "package_version": __version__,
            "weights_dtype": str(weights_dtype).removeprefix("torch."), **metadata}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(meta)})
    os.replace(tmp, path)


def read_metadata(path: str | Path) -> dict[str, Any]:
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: model file not found") from None
    except Exception as e:  # safetensors raises its own error types for a bad header
        raise ModelFileError(f"{path}: not a safetensors model file ({e})") from None
    if raw is None:
        raise ModelFileError(f"{path}: safetensors file without braintriage metadata")
    meta = json.loads(raw)
    if meta.get("format") != FORMAT_NAME or meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: unsupported model format {meta.get('format')} v{meta.get('format_version')}")
    return meta


def load_model(path: str | Path = BUNDLED_MODEL) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Build the network the metadata names and load its weights (as float32), in eval mode."""
    meta = read_metadata(path)
    model = build_model(meta["architecture"], in_channels=meta["input"]["channels"],
                        num_outputs=len(meta["class_names"]) if meta["output"] == "softmax" else 1,
                        image_size=meta["input"]["preprocess"]["size"])
    state = {}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            t = f.get_tensor(key)
            state[key] = t.float() if t.is_floating_point() else t
    model.load_state_dict(state)
    return model.eval(), meta
