"""The shared prediction head: one set of weights (`prediction_layers.0`) applied to every pyramid level."""
from __future__ import annotations

import torch
from torch import nn


class PredictionHead(nn.Module):
    """upfeature (3x3 conv + ReLU) then three 3x3 convs for boxes, class logits and mask coefficients."""

    def __init__(self, channels: int, num_classes: int, num_anchors: int, mask_dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.mask_dim = mask_dim
        self.upfeature = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True))
        self.bbox_layer = nn.Conv2d(channels, num_anchors * 4, 3, padding=1)
        self.conf_layer = nn.Conv2d(channels, num_anchors * num_classes, 3, padding=1)
        self.mask_layer = nn.Conv2d(channels, num_anchors * mask_dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[N, C, H, W] → loc [N, H·W·A, 4], class logits [N, H·W·A, K], tanh coefficients [N, H·W·A, P]."""
        x = self.upfeature(x)
        n = x.shape[0]
        # (N, A·k, H, W) → (N, H, W, A·k) → (N, H·W·A, k): rows run y, x, then anchor.
        loc = self.bbox_layer(x).permute(0, 2, 3, 1).reshape(n, -1, 4)
        conf = self.conf_layer(x).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes)
        coef = torch.tanh(self.mask_layer(x).permute(0, 2, 3, 1).reshape(n, -1, self.mask_dim))
        return loc, conf, coef
