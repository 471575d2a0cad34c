"""Bilinear upsampling of FPN maps, in PyTorch's form or in a fixed-weight separable form for NPUs.

At 550 the FPN upsamples 18→35 and 35→69: not the 2x/4x/8x that Vela (Ethos-U65) accepts for RESIZE_BILINEAR, so
those two ops fall back to the CPU and cut the NPU graph in three. A bilinear resize (align_corners=False) is a
fixed linear map per axis, out = A_h · x · A_wᵀ, so the same values come from two 1x1 convolutions whose weights
are those matrices, applied with the resized axis moved into the channel position: TRANSPOSE and CONV_2D, both
of which Vela places on the NPU.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def bilinear_matrix(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in] weights of PyTorch's bilinear resize along one axis (align_corners=False, size given)."""
    matrix = np.zeros((size_out, size_in), np.float32)
    scale = size_in / size_out
    for i in range(size_out):
        source = max((i + 0.5) * scale - 0.5, 0.0)
        low = min(int(np.floor(source)), size_in - 1)
        high = min(low + 1, size_in - 1)
        weight_high = source - low
        matrix[i, low] += 1.0 - weight_high
        matrix[i, high] += weight_high
    return matrix


def is_exact_2x(size_in: tuple[int, int], size_out: tuple[int, int]) -> bool:
    return all(o == 2 * i for i, o in zip(size_in, size_out))


def upsample_bilinear(x: torch.Tensor, size: tuple[int, int], *, separable: bool = False) -> torch.Tensor:
    """x [N, C, H, W] → [N, C, *size]. `separable` uses the fixed-weight convolution form (same values to float
    rounding) unless the factor is an exact 2x, which an NPU resizes natively."""
    size = (int(size[0]), int(size[1]))
    if not separable or is_exact_2x(tuple(x.shape[-2:]), size):
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    height, width = x.shape[-2:]
    rows = torch.from_numpy(bilinear_matrix(int(height), size[0])).to(x)[:, :, None, None]
    cols = torch.from_numpy(bilinear_matrix(int(width), size[1])).to(x)[:, :, None, None]
    t = F.conv2d(x.permute(0, 3, 1, 2), cols)  # [N, W, C, H] → [N, W', C, H]
    t = F.conv2d(t.permute(0, 3, 2, 1), rows)  # [N, H, C, W'] → [N, H', C, W']
    return t.permute(0, 2, 1, 3)  # [N, C, H', W']
