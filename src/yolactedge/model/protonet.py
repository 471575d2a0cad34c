"""The protonet: P3 → `mask_dim` prototype masks at twice P3's resolution, NHWC.

Indices inside the Sequential match the original's `proto_net.{0,2,4,8,10}` parameter keys.

The original puts a ReLU after the upsampling too. Bilinear upsampling of the preceding ReLU's non-negative output
is a convex combination, hence non-negative, so that ReLU never changes a value; it stays out of our graph because
an exported int8 RELU on the full-resolution prototype map is the one op XNNPACK leaves to the slow kernels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Upsample2x(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def build_protonet(in_channels: int, channels: int, mask_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
        Upsample2x(), nn.Identity(),
        nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(channels, mask_dim, 1),
    )


def prototypes(protonet: nn.Sequential, p3: torch.Tensor) -> torch.Tensor:
    """[N, C, H3, W3] → [N, 2·H3, 2·W3, mask_dim] after the ReLU prototype activation."""
    return F.relu(protonet(p3)).permute(0, 2, 3, 1).contiguous()
