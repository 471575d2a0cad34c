"""Backbones with the original implementation's module layout (so official state_dict keys map 1:1).

Each backbone returns the three feature maps the FPN uses, C3, C4, C5 (strides 8, 16, 32), and exposes
`out_channels` for them. `forward_c3` runs only the stages up to C3: the partial backbone of video non-key frames. Stages whose outputs are never used are still built (their weights are in every
official checkpoint) but are not executed.
"""
from __future__ import annotations

import torch
from torch import nn

# (expansion t, output channels c, blocks n, first stride s) per MobileNetV2 stage, width multiplier 1.0.
MOBILENETV2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
MOBILENETV2_SELECTED = (3, 4, 6)
RESNET_BLOCKS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}
RESNET_SELECTED = (1, 2, 3)


def conv_bn_relu6(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: optional 1x1 expansion, 3x3 depthwise, linear 1x1 projection."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = int(round(in_ch * expansion))
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn_relu6(in_ch, hidden, kernel=1))
        layers += [
            conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2Backbone(nn.Module):
    """`layers.0` stem, `layers.1..7` stages, `layers.8` the 1x1 head conv (unused, kept for the layout)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_relu6(3, 32, stride=2)]
        in_ch = 32
        for expansion, out_ch, blocks, stride in MOBILENETV2_STAGES:
            stage = [InvertedResidual(in_ch if i == 0 else out_ch, out_ch, stride if i == 0 else 1, expansion) for i in range(blocks)]
            layers.append(nn.Sequential(*stage))
            in_ch = out_ch
        layers.append(conv_bn_relu6(in_ch, 1280, kernel=1))
        self.layers = nn.ModuleList(layers)
        channels = [32] + [s[1] for s in MOBILENETV2_STAGES] + [1280]
        self.out_channels = tuple(channels[i] for i in MOBILENETV2_SELECTED)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i in range(max(MOBILENETV2_SELECTED) + 1):
            x = self.layers[i](x)
            if i in MOBILENETV2_SELECTED:
                outs.append(x)
        return outs

    def forward_c3(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(MOBILENETV2_SELECTED[0] + 1):
            x = self.layers[i](x)
        return x


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: the stride sits on the 3x3 conv."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetBackbone(nn.Module):
    """`layers` is registered before the stem, as in the original, so state_dict order matches too."""

    def __init__(self, blocks: tuple[int, ...]) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_ch = 64
        for index, (count, planes) in enumerate(zip(blocks, (64, 128, 256, 512))):
            stride = 1 if index == 0 else 2
            downsample = nn.Sequential(nn.Conv2d(in_ch, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))
            stage = [Bottleneck(in_ch, planes, stride, downsample)]
            stage += [Bottleneck(planes * 4, planes) for _ in range(count - 1)]
            self.layers.append(nn.Sequential(*stage))
            in_ch = planes * 4
        self.out_channels = tuple((256, 512, 1024, 2048)[i] for i in RESNET_SELECTED)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in RESNET_SELECTED:
                outs.append(x)
        return outs

    def forward_c3(self, x: torch.Tensor) -> torch.Tensor:
        """Stem, layers.0 and layers.1: what the original's `partial_backbone` (layers[:2]) runs."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for layer in self.layers[: RESNET_SELECTED[0] + 1]:
            x = layer(x)
        return x


def build_backbone(name: str) -> nn.Module:
    if name == "mobilenetv2":
        return MobileNetV2Backbone()
    if name in RESNET_BLOCKS:
        return ResNetBackbone(RESNET_BLOCKS[name])
    raise ValueError(f"unknown backbone {name!r}")
