"""The two classifiers, looked up by name, and ensembles of them. All take (N, 1, 48, 48) float
input and give one logit per class."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ferkit.choices import MODEL_NAMES, check_choice
from ferkit.emotions import IMAGE_SIZE


def _conv_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(inplace=True)]


def scaled(channels: int, width: float) -> int:
    """A layer's channel count under the width multiplier, kept a multiple of 8 for fast kernels."""
    return channels if width == 1.0 else max(8, round(channels * width / 8) * 8)


class BasicConvNet(nn.Module):
    """A plain CNN: three conv+pool stages and a two-layer MLP head, no normalisation layers."""

    def __init__(self, num_classes: int, dropout: float = 0.0, width: float = 1.0) -> None:
        super().__init__()
        c1, c2, c3 = (scaled(c, width) for c in (32, 64, 128))
        self.features = nn.Sequential(
            *_conv_relu(1, c1), *_conv_relu(c1, c1), nn.MaxPool2d(2),
            *_conv_relu(c1, c2), *_conv_relu(c2, c2), nn.MaxPool2d(2),
            *_conv_relu(c2, c3), nn.MaxPool2d(2),
        )
        side = IMAGE_SIZE // 8
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c3 * side * side, 256), nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(256, num_classes),
        )
        # Without normalisation layers, PyTorch's default init makes the early epochs crawl: He init
        # suits the ReLU layers, and a small output layer starts the loss near ln(7) instead of above it.
        for layer in self.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)
        nn.init.normal_(self.head[-1].weight, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _vgg_block(in_channels: int, out_channels: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for channels_in in (in_channels, out_channels):
        layers += [nn.Conv2d(channels_in, out_channels, 3, padding=1, bias=False),
                   nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.MaxPool2d(2), nn.Dropout(dropout / 2))


class VGGNet(nn.Module):
    """VGG-style: four blocks of two 3x3 conv+BN+ReLU with max-pooling and dropout, then an FC head."""

    def __init__(self, num_classes: int, dropout: float = 0.5, width: float = 1.0) -> None:
        super().__init__()
        widths = tuple(scaled(c, width) for c in (64, 128, 256, 512))
        blocks = [_vgg_block(c_in, c_out, dropout) for c_in, c_out in zip((1,) + widths, widths)]
        self.features = nn.Sequential(*blocks)
        side = IMAGE_SIZE // 16
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(widths[-1] * side * side, 1024), nn.BatchNorm1d(1024), nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(1024, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


MODELS: dict[str, Callable[..., nn.Module]] = dict(zip(MODEL_NAMES, (BasicConvNet, VGGNet), strict=True))


class Ensemble(nn.Module):
    """Several networks as one: the log of their mean softmax output, which stands in for logits
    (its softmax is the mean probability), so temperature scaling and TTA apply unchanged."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_probabilities = torch.stack([member(x).float().log_softmax(dim=1) for member in self.members])
        return log_probabilities.logsumexp(dim=0) - math.log(len(self.members))


def build_model(name: str, num_classes: int, dropout: float = 0.0, width: float = 1.0, members: int = 1) -> nn.Module:
    """One network, or with `members` > 1 an Ensemble of that many of the same shape."""
    network = MODELS[check_choice("model", name, MODEL_NAMES)]
    if members == 1:
        return network(num_classes, dropout=dropout, width=width)
    return Ensemble([network(num_classes, dropout=dropout, width=width) for _ in range(members)])
