"""Similarity of detections and tracks (box IoU and mask IoU on crops) and the optimal assignment between them.

Boxes are pixel x1, y1, x2, y2. Masks are crops as `Detections` stores them: a bool array covering an integer
pixel box (end exclusive), so the IoU of two masks only looks at where their boxes overlap.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (N, 4), b (M, 4) → (N, M) IoU; empty boxes have IoU 0 with everything."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    wh = np.clip(np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0, None)
    inter = wh[..., 0] * wh[..., 1]  # [N, M]
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def mask_iou(crop_a: np.ndarray, box_a, crop_b: np.ndarray, box_b, shift: tuple[int, int] = (0, 0)) -> float:
    """IoU of two crop masks, the second moved by `shift` (dx, dy) pixels first (a track's predicted motion)."""
    ax1, ay1, ax2, ay2 = (int(v) for v in box_a)
    bx1, by1, bx2, by2 = (int(v) for v in box_b)
    dx, dy = shift
    bx1, bx2, by1, by2 = bx1 + dx, bx2 + dx, by1 + dy, by2 + dy
    area_a, area_b = int(np.count_nonzero(crop_a)), int(np.count_nonzero(crop_b))
    x1, y1, x2, y2 = max(ax1, bx1), max(ay1, by1), min(ax2, bx2), min(ay2, by2)
    if x2 <= x1 or y2 <= y1 or area_a + area_b == 0:
        return 0.0
    inter = int(np.count_nonzero(crop_a[y1 - ay1:y2 - ay1, x1 - ax1:x2 - ax1]
                                 & crop_b[y1 - by1:y2 - by1, x1 - bx1:x2 - bx1]))
    return inter / (area_a + area_b - inter)


def assign(similarity: np.ndarray, minimum: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the assignment with the largest total similarity, pairs below `minimum` dropped.

    similarity (N, M) → (rows (P,), cols (P,)) int64; solved by scipy's linear_sum_assignment.
    """
    if similarity.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cost = np.where(similarity >= minimum, -similarity, 0.0)  # pairs below the minimum cannot help the total
    rows, cols = linear_sum_assignment(cost)
    good = similarity[rows, cols] >= minimum
    return rows[good].astype(np.int64), cols[good].astype(np.int64)
