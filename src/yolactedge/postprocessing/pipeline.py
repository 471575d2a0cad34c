"""Raw YOLACT-Edge outputs → detections of one image: NMS, boxes in pixels, masks at full resolution.

Axis letters: N anchors (priors), C foreground classes, P prototypes, Hp×Wp prototype map, H×W original
image, K kept detections, M anchors entering NMS, T NMS candidates (class, anchor), Q candidate pairs.
Boxes are x1, y1, x2, y2; "normalised" boxes are in image units (nominally [0, 1], not clamped), "pixel"
boxes are in the original image.

The default path (`nms="fast"`) reproduces haotian-liu/yolact_edge: `Detect.fast_nms` with its
`second_threshold` on (the original leaves it off and so also reports classes scoring below the threshold), then
`output_utils.postprocess` (sigmoid of the linear combination, crop at prototype resolution with one cell of
padding, bilinear upsampling with align_corners=False, threshold). Only the cost differs: masks are computed inside
each detection's footprint instead of at full frame for every detection.
"""
from __future__ import annotations

import numpy as np

from .detections import Detections
from .masks import mask_crops, to_pixels
from .nms import NMS_MODES, NmsMode, select


def postprocess(
    boxes: np.ndarray,
    scores: np.ndarray,
    masks: np.ndarray,
    proto: np.ndarray,
    image_size: tuple[int, int],
    *,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    nms: NmsMode = "fast",
    top_k: int = 200,
    max_detections: int = 100,
    mask_threshold: float = 0.5,
    second_threshold: bool = True,
) -> Detections:
    """Detections of one image from its raw outputs; inputs may carry a leading batch axis of 1.

    boxes (N, 4) normalised; scores (C, N) softmax without background; masks (N, P) coefficients;
    proto (Hp, Wp, P). image_size is the original (H, W). An anchor enters only if its best class scores above
    score_threshold, and a detection is kept only if its own class score does too (`second_threshold`, as the
    original's option of that name; with False, "fast" reproduces the original's default exactly: per class the
    top_k anchors whatever their own score, so boxes below the threshold can fill the output, as in its COCO
    evaluation). Each class contributes at most top_k candidates (ranked by score) to NMS:
    "fast" is YOLACT's Fast NMS (drops a box that overlaps any better box of its class, suppressed or not),
    "standard" is greedy per-class NMS, "class_agnostic" greedy NMS over each anchor's best class.
    mask_threshold must lie in (0, 1): pixels that no crop cell reaches are never computed.
    """
    if nms not in NMS_MODES:
        raise ValueError(f"nms must be one of {NMS_MODES}, got {nms!r}")
    height, width = (int(v) for v in image_size)
    if height <= 0 or width <= 0:
        raise ValueError(f"image_size must be positive (height, width), got {image_size}")
    check_thresholds(score_threshold, iou_threshold, top_k, max_detections, mask_threshold)
    boxes, scores, masks, proto = _check_inputs(boxes, scores, masks, proto)

    anchors, class_ids, kept_scores = select(boxes, scores, score_threshold, iou_threshold, nms, top_k,
                                              max_detections, second_threshold)
    kept_boxes = boxes[anchors]
    mask_boxes, crops = mask_crops(masks[anchors], proto, kept_boxes, (height, width), mask_threshold)
    return Detections(
        boxes=to_pixels(kept_boxes, height, width),
        scores=kept_scores.astype(np.float32),
        class_ids=class_ids.astype(np.int64),
        mask_boxes=mask_boxes,
        mask_crops=crops,
        image_size=(height, width),
    )


def check_thresholds(score_threshold: float, iou_threshold: float, top_k: int, max_detections: int,
                     mask_threshold: float = 0.5) -> None:
    """Reject values that would silently change what is kept (a max_detections of -1 would drop a detection)."""
    if not 0 <= score_threshold <= 1:
        raise ValueError(f"score threshold must lie in [0, 1], got {score_threshold}")
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"IoU threshold must lie in (0, 1], got {iou_threshold}")
    for name, value in (("top_k", top_k), ("max_detections", max_detections)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
    if not 0 < mask_threshold < 1:
        raise ValueError(f"mask_threshold must lie in (0, 1), got {mask_threshold}")


def _check_inputs(boxes, scores, masks, proto) -> tuple[np.ndarray, ...]:
    """float32 views without the batch axis, after checking that the shapes agree."""
    arrays = []
    for name, array, ndim in (("boxes", boxes, 2), ("scores", scores, 2), ("masks", masks, 2), ("proto", proto, 3)):
        array = np.asarray(array, dtype=np.float32)
        if array.ndim == ndim + 1 and array.shape[0] == 1:
            array = array[0]
        if array.ndim != ndim:
            raise ValueError(f"{name} must have {ndim} axes (or {ndim + 1} with batch 1), got {array.shape}")
        arrays.append(array)
    boxes, scores, masks, proto = arrays
    n = boxes.shape[0]
    if boxes.shape[1] != 4 or scores.shape[1] != n or masks.shape[0] != n or proto.shape[2] != masks.shape[1]:
        raise ValueError(f"inconsistent shapes: boxes {boxes.shape} (N,4), scores {scores.shape} (C,N), "
                         f"masks {masks.shape} (N,P), proto {proto.shape} (Hp,Wp,P)")
    return boxes, scores, masks, proto
