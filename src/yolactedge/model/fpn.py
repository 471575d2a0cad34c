"""The split FPN of YOLACT-Edge: phase 1 (laterals + top-down sum) and phase 2 (3x3 smoothing + downsampling).

The split exists in the original so that video frames can warp phase-1 features; for single images the two
phases simply run back to back. Lists are stored deepest-first, as the original does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .upsample import upsample_bilinear


class FPNPhase1(nn.Module):
    def __init__(self, in_channels: tuple[int, ...], channels: int) -> None:
        super().__init__()
        self.separable_upsampling = False  # the NPU-placeable form of the same resize (set for an Ethos-U export)
        self.lat_layers = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in reversed(in_channels))

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """features C3..C5 → P3..P5 before smoothing; upsampling goes to each finer map's exact size."""
        return self.with_finest_lateral(features)[0]

    def with_finest_lateral(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(P3..P5, lat_layers[-1](C3)): video key frames keep that lateral for the flow net."""
        outs: list[torch.Tensor] = [features[0]] * len(features)
        x = None
        for lat_layer, j in zip(self.lat_layers, range(len(features) - 1, -1, -1)):
            lateral = lat_layer(features[j])
            if x is None:
                x = lateral
            else:
                x = upsample_bilinear(x, features[j].shape[-2:], separable=self.separable_upsampling) + lateral
            outs[j] = x
        return outs, lateral


class FPNPhase2(nn.Module):
    def __init__(self, channels: int, num_downsample: int = 2) -> None:
        super().__init__()
        self.pred_layers = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(3))
        self.downsample_layers = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, stride=2, padding=1) for _ in range(num_downsample)
        )

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """P3..P5 → P3..P7; P6 and P7 are strided convs without ReLU."""
        count = len(features)
        outs = [F.relu(self.pred_layers[count - 1 - j](features[j])) for j in range(count)]
        for layer in self.downsample_layers:
            outs.append(layer(outs[-1]))
        return outs
