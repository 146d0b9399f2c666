"""The networks, built by name: `build_model("resnet18-w32", in_channels=1, num_outputs=4)`.

  seed-cnn      the original study's from-scratch baseline: two 3x3 conv + max-pool stages, dense 128,
                one sigmoid output. Kept so its numbers can be reproduced; too big to bundle (~19M weights
                in the dense layer).
  resnet18-w32  the default: ResNet-18's layout (four stages of two basic blocks) at half width
                (32-64-128-256 channels, 2.8M weights, 5.6 MB as float16). Global average pooling then
                one linear layer, so a class activation map needs only the last feature maps and the
                head weights.
  resnet18      the same at full width (64-512, 11.2M weights), for GPU experiments.

Every model maps a float batch (B, C, H, W) to logits (B, num_outputs): one output means a sigmoid
P(tumor); several mean softmax over tumor types with "no tumor" at index 0.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


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

    def features_with_penultimate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The last feature maps (B, C, h, w) and the penultimate stage's output averaged over space (B, C/2).
        The out-of-distribution guard looks at both: a middle stage still sees texture and layout that the
        last, class-focused one has discarded."""
        h = self.stem(x)
        penultimate = h
        for k, block in enumerate(self.stages):
            h = block(h)
            if k == self.penultimate_end:
                penultimate = h.mean(dim=(2, 3))
        return h, penultimate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.feature_maps(x).mean(dim=(2, 3))))


MODELS: dict[str, Callable[..., nn.Module]] = {
    "seed-cnn": lambda in_channels, num_outputs, image_size: SeedCNN(in_channels, num_outputs, image_size),
    "resnet18-w32": lambda in_channels, num_outputs, image_size: ResNet(in_channels, num_outputs, width=32),
    "resnet18": lambda in_channels, num_outputs, image_size: ResNet(in_channels, num_outputs, width=64),
}
DEFAULT_MODEL = "resnet18-w32"


def build_model(name: str, in_channels: int = 1, num_outputs: int = 4, image_size: int = 200) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name](in_channels, num_outputs, image_size)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def to_model_input(images_uint8: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 (B, H, W) or (B, 1, H, W) -> normalised float (B, 1, H, W). Training and inference share it."""
    x = images_uint8.float().div_(255.0)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    return (x - mean) / std


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
