"""COCO run-length encoding in NumPy, so that COCO and YouTube-VIS results need no pycocotools on a board.

The format is pycocotools' compressed RLE: the mask read column by column (Fortran order), run lengths starting
with a run of zeros, each count after the third stored as the difference from the count two before, then written
five bits per character (ASCII 48 + value, bit 5 set while more characters follow), a sign bit in the last one.
"""
from __future__ import annotations

import numpy as np


def encode_crop(crop: np.ndarray, box: tuple[int, int, int, int], image_size: tuple[int, int]) -> dict:
    """bool crop [y2-y1, x2-x1] placed at pixel box (x1, y1, x2, y2) of an (H, W) image → {"size", "counts"}.

    Only the columns the crop spans are scanned: the columns left and right of it are one run of zeros each.
    """
    height, width = image_size
    x1, y1, x2, y2 = box
    if crop.size == 0:
        return {"size": [height, width], "counts": compress_counts(np.array([height * width], np.int64))}
    columns = np.zeros((height, x2 - x1), bool)
    columns[y1:y2] = crop
    counts = run_lengths(columns.ravel(order="F"))
    counts[0] += x1 * height
    if len(counts) % 2:  # ends inside a run of zeros: extend it
        counts[-1] += (width - x2) * height
    elif x2 < width:
        counts = np.append(counts, (width - x2) * height)
    return {"size": [height, width], "counts": compress_counts(counts)}


def encode(mask: np.ndarray) -> dict:
    """bool or 0/1 mask [H, W] → COCO compressed RLE {"size": [H, W], "counts": str}, as pycocotools' encode."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {mask.shape}")
    return {"size": list(mask.shape), "counts": compress_counts(run_lengths(mask.ravel(order="F") != 0))}


def run_lengths(flat: np.ndarray) -> np.ndarray:
    """bool [L] → int64 run lengths, alternating, the first a (possibly empty) run of False."""
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [len(flat)]))
    counts = np.diff(bounds)
    if len(flat) and flat[0]:
        counts = np.concatenate(([0], counts))
    return counts.astype(np.int64)


def compress_counts(counts: np.ndarray) -> str:
    """Run lengths → pycocotools' compressed string (LEB128-like, 5 bits per character, delta coded)."""
    values = np.asarray(counts, np.int64).copy()
    values[3:] -= counts[1:-2].astype(np.int64) if len(values) > 3 else 0
    out = []
    for value in values.tolist():
        more = True
        while more:
            chunk = value & 0x1F
            value >>= 5
            more = not ((chunk & 0x10 == 0 and value == 0) or (chunk & 0x10 and value == -1))
            out.append(chr(48 + (chunk | 0x20 if more else chunk)))
    return "".join(out)


def decode(rle: dict) -> np.ndarray:
    """COCO compressed RLE → bool mask [H, W]; the inverse of `encode`, for reading results without pycocotools."""
    height, width = rle["size"]
    counts = _uncompress_counts(rle["counts"])
    values = np.zeros(len(counts), bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    if flat.size != height * width:
        raise ValueError(f"RLE counts cover {flat.size} pixels, not {height}x{width}")
    return flat.reshape((height, width), order="F")


def _uncompress_counts(text: str | bytes) -> np.ndarray:
    if isinstance(text, bytes):
        text = text.decode("ascii")
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            chunk = ord(text[position]) - 48
            value |= (chunk & 0x1F) << shift
            more = bool(chunk & 0x20)
            position += 1
            shift += 5
            if not more and chunk & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return np.array(counts, np.int64)
