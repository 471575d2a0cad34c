"""`Detections`: what post-processing returns for one image, with its COCO results form.

Boxes are pixel x1, y1, x2, y2 in the original image; masks are stored as crops (see the class docstring).
"""
from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .rle import encode_crop


@dataclass(frozen=True, eq=False)
class Detections:
    """Detections of one image, best first.

    boxes float32 (K, 4) pixel x1, y1, x2, y2 clipped to the image (whole pixels, as the original casts them);
    scores float32 (K,) descending; class_ids int64 (K,) 0-based foreground classes; image_size (H, W).
    Masks are stored as mask_crops, K bool arrays covering mask_boxes int64 (K, 4) pixel x1, y1, x2, y2 (end
    exclusive), False everywhere else: full-frame masks take K·H·W bytes (200 MB for 100 detections at 1080p), so
    `masks`, bool (K, H, W), is only built when first read. Consumers that can work on crops should.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    mask_boxes: np.ndarray
    mask_crops: tuple[np.ndarray, ...] = field(repr=False)
    image_size: tuple[int, int]

    @functools.cached_property
    def masks(self) -> np.ndarray:
        """bool (K, H, W) full-frame masks, built on first read and then kept."""
        full = np.zeros((len(self), *self.image_size), bool)
        for k, (crop, (x1, y1, x2, y2)) in enumerate(zip(self.mask_crops, self.mask_boxes.tolist())):
            full[k, y1:y2, x1:x2] = crop
        return full

    @classmethod
    def from_masks(cls, boxes, scores, class_ids, masks: np.ndarray) -> Detections:
        """Detections from full-frame bool masks (K, H, W), e.g. another runtime's; crops are views of `masks`."""
        masks = np.asarray(masks, dtype=bool)
        cols, rows = masks.any(axis=1), masks.any(axis=2)
        width, height = cols.shape[1], rows.shape[1]
        mask_boxes = np.stack([cols.argmax(1), rows.argmax(1), width - cols[:, ::-1].argmax(1),
                               height - rows[:, ::-1].argmax(1)], axis=1) * cols.any(1)[:, None]
        detections = cls(
            boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
            scores=np.asarray(scores, np.float32).reshape(-1),
            class_ids=np.asarray(class_ids, np.int64).reshape(-1),
            mask_boxes=mask_boxes.astype(np.int64),
            mask_crops=tuple(m[y1:y2, x1:x2] for m, (x1, y1, x2, y2) in zip(masks, mask_boxes.tolist())),
            image_size=masks.shape[1:],
        )
        detections.__dict__["masks"] = masks  # the cached_property's slot: no need to rebuild what we were given
        return detections

    def __len__(self) -> int:
        return len(self.scores)

    def subset(self, keep: np.ndarray) -> Detections:
        """The detections at indices (or where the bool flags are) `keep`, in that order."""
        index = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep, np.int64)
        return Detections(self.boxes[index], self.scores[index], self.class_ids[index], self.mask_boxes[index],
                          tuple(self.mask_crops[k] for k in index.tolist()), self.image_size)

    def summary(self, class_names: Sequence[str]) -> str:
        """One line such as "2 circle, 1 star" (most frequent class first)."""
        if len(self) == 0:
            return "no detections"
        names = (class_names[c] if c < len(class_names) else f"class {c}" for c in self.class_ids.tolist())
        return ", ".join(f"{count} {name}" for name, count in Counter(names).most_common())

    def to_coco_json(self, image_id: int, category_ids: Sequence[int] | None = None) -> list[dict]:
        """COCO result dicts: bbox as x, y, w, h; category_id = category_ids[class_id], else class_id + 1."""
        results = []
        for box, score, class_id, crop, mask_box in zip(
                self.boxes.tolist(), self.scores.tolist(), self.class_ids.tolist(), self.mask_crops,
                self.mask_boxes.tolist()):
            rle = encode_crop(crop, mask_box, self.image_size)
            results.append({
                "image_id": image_id,
                "category_id": int(category_ids[class_id]) if category_ids is not None else class_id + 1,
                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                "score": score,
                "segmentation": rle,
            })
        return results
