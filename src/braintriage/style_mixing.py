"""Style mixing in feature space (MixStyle: Zhou et al., "Domain Generalization with MixStyle", ICLR 2021).

In a training step, with some probability, the early feature maps of each image in the batch keep their
content (the maps normalised per channel) and take a random mix of their own style and another image's: the
per-channel mean and standard deviation over space.

Why: issue 21's shortcut is a style. A collection's sequence, contrast and scanner read as "tumor". The
statistics of a CNN's early feature maps carry such style far more than anatomy, so mixing them between the
images of a batch (which come from several sources) shows the network each image's anatomy in other images'
styles. Histogram matching (augment.py) does the same on the pixels, one grey-level curve per image; this reaches
texture and contrast statistics a grey-level curve cannot.

Training only. The hooks that mix act in training mode with gradients on (a training step), never at
validation, prediction or BatchNorm re-estimation (no gradients there), and they are not part of the model file:
the exported network is unchanged. Random numbers come from torch's global generator, as dropout's do, so
`--resume` continues a run exactly (train.py keeps that generator's state in the checkpoint).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from braintriage.models import EfficientNetLite, ResNet

ALPHA = 0.1  # the mix's weight is Beta(0.1, 0.1): mostly near one image's style or the other's (the paper's)
EPS = 1e-6


def mix_styles(maps: torch.Tensor, alpha: float = ALPHA) -> torch.Tensor:
    """maps (B, C, H, W): each image's per-channel mean and standard deviation replaced by a random mix of its
    own and those of another image of the batch (a random pairing); its normalised maps kept."""
    n = maps.shape[0]
    if n < 2:
        return maps
    mean = maps.mean(dim=(2, 3), keepdim=True).detach()  # style as a fixed input: gradients reach content only
    std = (maps.var(dim=(2, 3), keepdim=True) + EPS).sqrt().detach()
    own = torch.distributions.Beta(alpha, alpha).sample((n, 1, 1, 1)).to(maps.device, maps.dtype)
    other = torch.randperm(n).to(maps.device)  # on the CPU generator, as the other draws
    mixed_mean = own * mean + (1 - own) * mean[other]
    mixed_std = own * std + (1 - own) * std[other]
    return (maps - mean) / std * mixed_std + mixed_mean


def mixing_points(model: nn.Module) -> list[nn.Module]:
    """The blocks after which styles are mixed: the ends of the stages at strides 4 and 8 (as the paper's after
    a ResNet's first two stages), where feature maps hold style rather than the classes."""
    if isinstance(model, EfficientNetLite):  # its first stage is at stride 2
        return [model.blocks[k] for k in model.stage_ends[1:3]]
    if isinstance(model, ResNet):
        return [model.stages[k] for k in model.stage_ends[0:2]]
    raise ValueError(f"style mixing knows the stages of EfficientNet-Lite and the ResNets, not {type(model).__name__}")


def mix_styles_in_training(model: nn.Module, probability: float) -> list[RemovableHandle]:
    """Hook style mixing into `model`: in a training step (training mode, gradients on), each mixing point mixes
    its output's styles with `probability`, drawn per point and step. Returns the hooks' handles."""
    def hook(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
        if not (model.training and torch.is_grad_enabled()) or torch.rand(()) >= probability:
            return output
        return mix_styles(output)

    return [point.register_forward_hook(hook) for point in mixing_points(model)]
