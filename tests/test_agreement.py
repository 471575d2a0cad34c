"""Float-vs-int8 agreement: one-to-one matching by class and box IoU."""
from __future__ import annotations

import math

import numpy as np

from yolactedge.agreement import agreement
from yolactedge.postprocessing import Detections


def detections(boxes, classes):
    masks = np.zeros((len(boxes), 40, 40), bool)
    for m, (x1, y1, x2, y2) in zip(masks, boxes):
        m[y1:y2, x1:x2] = True
    return Detections.from_masks(np.array(boxes, np.float32).reshape(-1, 4), np.linspace(0.9, 0.5, len(boxes)),
                                 classes, masks)


def test_identical_detections_all_match():
    a = detections([(0, 0, 10, 10), (20, 20, 30, 35)], [0, 1])
    result = agreement(a, a)
    assert (result.matched, result.recall, result.mean_box_iou, result.mean_mask_iou) == (2, 1.0, 1.0, 1.0)


def test_class_threshold_and_one_to_one():
    reference = detections([(0, 0, 10, 10), (0, 0, 10, 10), (20, 20, 30, 30)], [0, 0, 1])
    candidate = detections([(0, 0, 10, 11), (20, 20, 30, 30), (25, 25, 35, 35)], [0, 0, 1])
    result = agreement(reference, candidate)
    # Reference 0 takes candidate 0; reference 1 finds no unused box of its class; candidate 2 overlaps
    # reference 2 by 25/175 only.
    assert (result.reference, result.candidate, result.matched) == (3, 3, 1)
    assert math.isclose(result.mean_box_iou, 100 / 110)
    merged = result.merge(agreement(reference, reference))
    assert merged.matched == 4 and math.isclose(merged.mean_box_iou, (100 / 110 + 3) / 4)
