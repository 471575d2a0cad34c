"""How far two models' detections agree on the same image: the float-vs-int8 check after post-processing."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .postprocessing import Detections


@dataclass(frozen=True)
class Agreement:
    reference: int  # detections of the reference (float) model
    candidate: int  # detections of the candidate (e.g. int8) model
    matched: int  # pairs with the same class and box IoU >= the threshold
    mean_box_iou: float  # over matched pairs (nan when none)
    mean_mask_iou: float

    @property
    def recall(self) -> float:
        """Share of the reference's detections the candidate reproduces (1.0 when both found nothing)."""
        return self.matched / self.reference if self.reference else float(self.candidate == 0)

    def merge(self, other: "Agreement") -> "Agreement":
        total = self.matched + other.matched

        def mean(a: float, b: float) -> float:
            if total == 0:
                return float("nan")
            return float((np.nan_to_num(a) * self.matched + np.nan_to_num(b) * other.matched) / total)

        return Agreement(self.reference + other.reference, self.candidate + other.candidate, total,
                         mean(self.mean_box_iou, other.mean_box_iou), mean(self.mean_mask_iou, other.mean_mask_iou))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a [N, 4], b [M, 4] pixel x1, y1, x2, y2 → IoU [N, M] (0 where the union is empty)."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def agreement(reference: Detections, candidate: Detections, iou_threshold: float = 0.5) -> Agreement:
    """Greedy one-to-one matching in the reference's score order: same class, box IoU above the threshold."""
    iou = box_iou(np.asarray(reference.boxes, np.float64), np.asarray(candidate.boxes, np.float64))
    same_class = reference.class_ids[:, None] == candidate.class_ids[None, :]
    taken = np.zeros(len(candidate), dtype=bool)
    box_ious, mask_ious = [], []
    for i in range(len(reference)):
        allowed = ~taken & same_class[i] & (iou[i] > iou_threshold)
        if not allowed.any():
            continue
        j = int(np.argmax(np.where(allowed, iou[i], -1.0)))
        taken[j] = True
        box_ious.append(float(iou[i, j]))
        a, b = reference.masks[i], candidate.masks[j]
        union = np.count_nonzero(a | b)
        mask_ious.append(np.count_nonzero(a & b) / union if union else 1.0)
    return Agreement(len(reference), len(candidate), len(box_ious), _mean(box_ious), _mean(mask_ious))


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")
