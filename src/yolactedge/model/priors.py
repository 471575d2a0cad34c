"""Square anchor boxes ("priors") of YOLACT-Edge.

Priors are [A, 4] as normalised cx, cy, w, h. Rows run level by level (P3..P7), then row y, column x, then
aspect ratio, which is the order the prediction head flattens its outputs in. Centres use each level's actual
feature-map size (69, 35, 18, 9, 5 at 550), not input_size / stride.
"""
from __future__ import annotations

import math

import numpy as np

VARIANCES = (0.1, 0.2)


def make_priors(
    feature_sizes: list[tuple[int, int]],
    scales: tuple[int, ...],
    aspect_ratios: tuple[float, ...],
    input_size: int,
) -> np.ndarray:
    """float32 [A, 4] cx, cy, w, h. Square anchors: the side is scale·√ratio / input_size (h is set to w)."""
    levels = []
    for (height, width), scale in zip(feature_sizes, scales):
        ys, xs = np.meshgrid((np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width, indexing="ij")
        sides = np.array([scale * math.sqrt(r) / input_size for r in aspect_ratios])
        level = np.empty((height, width, len(aspect_ratios), 4), dtype=np.float64)
        level[..., 0] = xs[..., None]
        level[..., 1] = ys[..., None]
        level[..., 2] = sides
        level[..., 3] = sides
        levels.append(level.reshape(-1, 4))
    return np.concatenate(levels).astype(np.float32)

