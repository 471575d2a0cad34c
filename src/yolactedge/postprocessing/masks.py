"""Boxes to pixels and masks at full resolution, computed only inside each detection's footprint.

Axis letters: N anchors (priors), C foreground classes, P prototypes, Hp×Wp prototype map, H×W original
image, K kept detections, M anchors entering NMS, T NMS candidates (class, anchor), Q candidate pairs.
Boxes are x1, y1, x2, y2; "normalised" boxes are in image units (nominally [0, 1], not clamped), "pixel"
boxes are in the original image.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import cv2
import numpy as np


def to_pixels(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(K, 4) normalised → float32 whole-pixel boxes: ordered, scaled, clipped, truncated as the original does."""
    x = boxes[:, 0::2] * np.float32(width)
    y = boxes[:, 1::2] * np.float32(height)
    out = np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], axis=1)
    np.clip(out, 0, np.array([width, height, width, height], np.float32), out=out)
    return np.trunc(out)


def proto_crop(boxes: np.ndarray, proto_h: int, proto_w: int) -> np.ndarray:
    """(K, 4) normalised → (K, 4) int64 prototype cells [x1, x2) × [y1, y2) kept by the original's `crop`.

    It keeps cell c when lo <= c < hi, with lo, hi the box scaled to the map, widened by one cell and clamped,
    all in float32; for whole c that is ceil(lo) <= c < ceil(hi).
    """
    def axis(a, b, size):
        size32 = np.float32(size)
        lo = np.maximum(np.minimum(a, b) * size32 - np.float32(1), 0)
        hi = np.minimum(np.maximum(a, b) * size32 + np.float32(1), size32)
        return np.ceil(lo), np.ceil(hi)

    (x1, x2), (y1, y2) = axis(boxes[:, 0], boxes[:, 2], proto_w), axis(boxes[:, 1], boxes[:, 3], proto_h)
    return np.clip(np.stack([x1, y1, x2, y2], axis=1), 0, [proto_w, proto_h, proto_w, proto_h]).astype(np.int64)


class _Axis(NamedTuple):
    """Bilinear resampling of one axis from size_in cells to len(lower) pixels, as a full-frame resize does it.

    lower, upper are each pixel's two taps (cells), non-decreasing. The tap pattern repeats every period_in
    cells = period_out pixels, so a block of cells starting at a multiple of period_in resizes onto the full
    frame's pixel grid.
    """

    lower: np.ndarray
    upper: np.ndarray
    size_in: int
    period_in: int
    period_out: int


@functools.lru_cache(maxsize=16)
def _axis(size_out: int, size_in: int) -> _Axis:
    """Taps as cv2.resize computes them: half-pixel centres, clamped to the edge cells."""
    src = ((np.arange(size_out) + 0.5) * (1 / (size_out / size_in)) - 0.5).astype(np.float32)
    floor = np.floor(src).astype(np.int64)
    lower, upper = np.clip(floor, 0, size_in - 1), np.clip(floor + 1, 0, size_in - 1)
    for array in (lower, upper):
        array.flags.writeable = False
    common = math.gcd(size_out, size_in)
    return _Axis(lower, upper, size_in, size_in // common, size_out // common)


def _plan(first: np.ndarray, end: np.ndarray, axis: _Axis) -> np.ndarray:
    """Per detection along one axis, from its crop cells [first, end) (K,) each → (K, 5) int64 columns:

    pixels [p1, p2) that can see a crop cell (the footprint, empty if p2 <= p1); the block of cells [b1, b2) to
    resize, which starts on the period and covers every tap of the footprint; the pixel its first output lands on.
    """
    p1 = np.searchsorted(axis.upper, first)  # first pixel whose upper tap reaches the crop
    p2 = np.where(end > first, np.searchsorted(axis.lower, end), p1)  # first pixel whose lower tap is past it
    b1 = axis.lower[np.minimum(p1, len(axis.lower) - 1)] // axis.period_in * axis.period_in
    b2 = np.minimum(axis.upper[np.maximum(p2 - 1, 0)] + 1, axis.size_in)
    return np.stack([p1, p2, b1, b2, b1 // axis.period_in * axis.period_out], axis=1)


def _avoid_plain_copies(plans, scales, sizes_in) -> None:
    """Widen, in place, blocks that cv2.resize would copy rather than resample.

    It copies when the output size equals the input size, which a small block can hit when the scales are close
    to 1; such blocks take the whole map along an axis that really rescales, whose output size then differs.
    """
    same_size = np.ones(len(plans[0]), bool)
    for plan, scale in zip(plans, scales):
        cells = plan[:, 3] - plan[:, 2]
        same_size &= np.round(cells * scale) == cells  # cv2 rounds half to even, as NumPy does
    for plan, scale, size_in in zip(plans, scales, sizes_in):
        if scale != 1:
            plan[same_size, 2:] = 0, size_in, 0
            return


def mask_crops(coeffs, proto, boxes, image_size, mask_threshold) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Masks at full resolution, computed only in each detection's footprint.

    coeffs (K, P), proto (Hp, Wp, P), boxes (K, 4) normalised → mask_boxes int64 (K, 4), K bool crops.
    Same result as the original, which takes sigmoid(proto @ coeffs), zeroes it outside the crop, resizes it
    bilinearly to (H, W) and thresholds it: only the crop's cells are combined (the rest would be zeroed), pixels
    whose taps miss the crop stay 0, and inside the footprint cv2.resize of a period-aligned block of cells lands
    on exactly the full frame's pixel grid.
    """
    height, width = image_size
    proto_h, proto_w, _ = proto.shape
    scale_x, scale_y = width / proto_w, height / proto_h
    cells = proto_crop(boxes, proto_h, proto_w)
    x_plan = _plan(cells[:, 0], cells[:, 2], _axis(width, proto_w))
    y_plan = _plan(cells[:, 1], cells[:, 3], _axis(height, proto_h))
    _avoid_plain_copies((x_plan, y_plan), (scale_x, scale_y), (proto_w, proto_h))
    mask_boxes = np.zeros((len(cells), 4), np.int64)
    crops = []
    for k, ((cx1, cy1, cx2, cy2), xs, ys) in enumerate(zip(cells.tolist(), x_plan.tolist(), y_plan.tolist())):
        (px1, px2, bx1, bx2, ox), (py1, py2, by1, by2, oy) = xs, ys
        if px2 <= px1 or py2 <= py1:
            crops.append(np.zeros((0, 0), bool))
            continue
        block = np.zeros((by2 - by1, bx2 - bx1), np.float32)
        y1, y2, x1, x2 = max(cy1, by1), min(cy2, by2), max(cx1, bx1), min(cx2, bx2)
        block[y1 - by1:y2 - by1, x1 - bx1:x2 - bx1] = _sigmoid(proto[y1:y2, x1:x2] @ coeffs[k])
        resized = cv2.resize(block, None, fx=scale_x, fy=scale_y, interpolation=cv2.INTER_LINEAR)
        crops.append(resized[py1 - oy:py2 - oy, px1 - ox:px2 - ox] > mask_threshold)
        mask_boxes[k] = px1, py1, px2, py2
    return mask_boxes, tuple(crops)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """float32 logistic function; exp's argument is capped at 80 (where sigmoid < 1e-34) so it cannot overflow."""
    out = np.minimum(np.negative(x), np.float32(80))
    np.exp(out, out=out)
    out += np.float32(1)
    return np.reciprocal(out, out=out)
