"""Draw Detections on an RGB image: translucent masks, boxes and "class score" labels.

Axis letters: H×W image, K detections. Images are uint8 (H, W, 3) RGB; colours are RGB triples.
"""
from __future__ import annotations

import colorsys
from typing import Sequence

import cv2
import numpy as np

from .postprocessing import Detections


def _make_palette(size: int) -> np.ndarray:
    """(size, 3) uint8 RGB colours; golden-ratio hue steps keep neighbouring class ids far apart."""
    colours = [colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.75 if i % 2 else 0.95, 0.95 if i % 3 else 0.8)
               for i in range(size)]
    return np.round(np.array(colours) * 255).astype(np.uint8)


# Entry 0 of the lookup table means "no mask", so a uint8 label map can address 255 class colours.
_PALETTE = _make_palette(255)
_MASK_LUT = np.vstack([np.zeros((1, 3), np.uint8), _PALETTE]).reshape(256, 1, 3)


def class_color(class_id: int) -> tuple[int, int, int]:
    """The fixed RGB colour of a class (the palette repeats every 255 ids)."""
    return tuple(int(v) for v in _PALETTE[int(class_id) % len(_PALETTE)])


def draw_detections(
    image_rgb_uint8: np.ndarray,
    detections: Detections,
    class_names: Sequence[str],
    *,
    alpha: float = 0.45,
    show_masks: bool = True,
    show_boxes: bool = True,
    show_labels: bool = True,
    track_ids: np.ndarray | None = None,
) -> np.ndarray:
    """A new (H, W, 3) uint8 image with the detections drawn; the input is left untouched.

    The best detection is drawn last, so it sits on top where detections overlap. With track_ids (int (K,),
    negative for untracked), each track gets its own colour and its label starts with "#id".
    """
    image = np.asarray(image_rgb_uint8)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    if tuple(detections.image_size) != image.shape[:2]:
        raise ValueError(f"detections are for a {detections.image_size} image, got {image.shape[:2]}")
    out = image.copy()
    colour_ids = detections.class_ids if track_ids is None else np.where(track_ids >= 0, track_ids, 0)
    colour_ids = np.asarray(colour_ids, np.int64)
    if show_masks and len(detections):
        _blend_masks(out, detections, colour_ids, alpha)
    thickness = max(1, round(min(out.shape[:2]) / 400))
    boxes = detections.boxes.astype(np.int64).tolist()
    order = range(len(detections) - 1, -1, -1)
    if show_boxes:
        for k in order:
            x1, y1, x2, y2 = boxes[k]
            cv2.rectangle(out, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), class_color(colour_ids[k]), thickness)
    if show_labels:
        for k in order:
            class_id = int(detections.class_ids[k])
            name = class_names[class_id] if class_id < len(class_names) else f"class {class_id}"
            track = f"#{track_ids[k]} " if track_ids is not None and track_ids[k] >= 0 else ""
            _draw_label(out, f"{track}{name} {detections.scores[k]:.2f}", boxes[k][:2], class_color(colour_ids[k]))
    return out


def _blend_masks(out: np.ndarray, detections: Detections, colour_ids: np.ndarray, alpha: float) -> None:
    """Tint mask pixels in place with their colour (class or track): one blend for all masks, in their union only."""
    regions = detections.mask_boxes
    nonempty = np.flatnonzero((regions[:, 2] > regions[:, 0]) & (regions[:, 3] > regions[:, 1]))
    if len(nonempty) == 0:
        return
    ux1, uy1 = regions[nonempty, :2].min(0)
    ux2, uy2 = regions[nonempty, 2:].max(0)
    labels = np.zeros((uy2 - uy1, ux2 - ux1), np.uint8)  # 0: no mask, else 1 + palette index
    local = (regions - [ux1, uy1, ux1, uy1]).tolist()
    values = (colour_ids % len(_PALETTE) + 1).tolist()
    for k in nonempty[::-1].tolist():
        x1, y1, x2, y2 = local[k]
        np.copyto(labels[y1:y2, x1:x2], values[k], where=detections.mask_crops[k])
    view = out[uy1:uy2, ux1:ux2]
    colours = cv2.applyColorMap(labels, _MASK_LUT)  # a palette lookup, faster here than cv2.LUT
    tinted = cv2.addWeighted(view, 1 - alpha, colours, alpha, 0)
    view[...] = cv2.copyTo(tinted, labels, view)  # where labels != 0; usually in place, the copy makes sure


def _draw_label(out: np.ndarray, text: str, corner: Sequence[int], colour: tuple[int, int, int]) -> None:
    """Text on a filled box of the class colour, above the box corner (inside it at the top edge)."""
    height, width = out.shape[:2]
    scale = max(0.4, min(height, width) / 1500)
    thick = max(1, round(scale * 1.5))
    (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(2, round(th / 4))
    box_w, box_h = tw + 2 * pad, th + baseline + 2 * pad
    x = min(max(int(corner[0]), 0), max(width - box_w, 0))
    y = int(corner[1]) - box_h if int(corner[1]) >= box_h else min(int(corner[1]), max(height - box_h, 0))
    cv2.rectangle(out, (x, y), (x + box_w - 1, y + box_h - 1), colour, cv2.FILLED)
    # Black on light colours, white on dark ones: readable whatever the image underneath.
    luma = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    ink = (0, 0, 0) if luma > 140 else (255, 255, 255)
    cv2.putText(out, text, (x + pad, y + pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, ink, thick, cv2.LINE_AA)
