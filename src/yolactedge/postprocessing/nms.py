"""Choosing detections: per-class candidates, Fast NMS (the original's), greedy and class-agnostic NMS.

Axis letters: N anchors (priors), C foreground classes, P prototypes, Hp×Wp prototype map, H×W original
image, K kept detections, M anchors entering NMS, T NMS candidates (class, anchor), Q candidate pairs.
Boxes are x1, y1, x2, y2; "normalised" boxes are in image units (nominally [0, 1], not clamped), "pixel"
boxes are in the original image.
"""
from __future__ import annotations

from typing import Literal, NamedTuple

import cv2
import numpy as np

NmsMode = Literal["fast", "standard", "class_agnostic"]
NMS_MODES = ("fast", "standard", "class_agnostic")


class _Candidates(NamedTuple):
    """T NMS candidates sorted by group (a class, or a single group), then score descending, then anchor id.

    group_start[t] is the index of the first candidate of t's group, so t - group_start[t] is its rank there.
    """

    anchor: np.ndarray
    class_id: np.ndarray
    score: np.ndarray
    group_start: np.ndarray


def select(boxes, scores, score_threshold, iou_threshold, nms, top_k, max_detections, second_threshold=True):
    """→ anchor ids (K,), class ids (K,), scores (K,) of the detections that survive NMS, best first."""
    anchors = np.flatnonzero(scores.max(axis=0) > score_threshold)
    if nms == "class_agnostic":
        cand = _best_class_candidates(scores[:, anchors], anchors, top_k)
    else:
        cand = _per_class_candidates(scores[:, anchors], anchors, score_threshold, top_k)
    nms_fn = _fast_nms if nms == "fast" else _greedy_nms
    kept = np.flatnonzero(nms_fn(boxes[cand.anchor], cand.group_start, iou_threshold))  # group-major order
    kept = kept[np.argsort(-cand.score[kept], kind="stable")[:max_detections]]
    result = cand.anchor[kept], cand.class_id[kept], cand.score[kept]
    if nms == "fast" and not second_threshold and len(kept) < max_detections:
        extra = _fast_nms_tail(boxes, scores[:, anchors], anchors, cand, score_threshold, iou_threshold, top_k,
                               max_detections - len(kept))
        result = tuple(np.concatenate(pair) for pair in zip(result, extra))
    return result


def _fast_nms_tail(boxes, scores, anchors, cand: _Candidates, score_threshold, iou_threshold, top_k, wanted,
                   chunk: int = 256):
    """The original's Fast NMS also ranks, per class, anchors whose own class score is at or below the threshold
    (their best class passed it), up to top_k per class; survivors fill the output after every box above it.

    They cannot suppress a better box, so only they need checking, best first across classes, until `wanted`
    survive. A candidate goes if a better box of its class (kept or not) overlaps it more than the threshold.
    scores (C, M) for the anchors with ids `anchors`; returns anchor ids, class ids, scores, best first.
    """
    class_id, column = np.nonzero(scores <= score_threshold)
    score = scores[class_id, column]
    order = np.lexsort((-score, class_id))
    class_id, column, score = class_id[order], column[order], score[order]
    above = np.bincount(cand.class_id, minlength=scores.shape[0])
    rank = np.arange(len(class_id)) - np.searchsorted(class_id, class_id)
    fits = rank < top_k - above[class_id]
    class_id, column, score = class_id[fits], column[fits], score[fits]
    order = np.argsort(-score, kind="stable")  # best first across classes
    class_id, anchor, score = class_id[order], anchors[column[order]], score[order]
    seen_boxes, seen_classes = boxes[cand.anchor], cand.class_id
    keep = np.zeros(len(anchor), bool)
    for start in range(0, len(anchor), chunk):
        part = slice(start, start + chunk)
        others = np.concatenate([seen_boxes, boxes[anchor[part]]])
        other_classes = np.concatenate([seen_classes, class_id[part]])
        iou = _iou_matrix(boxes[anchor[part]], others)  # [chunk, seen + chunk]
        n_seen, n_part = len(seen_boxes), len(class_id[part])
        better = np.ones((n_part, n_seen + n_part), bool)
        better[:, n_seen:] = np.tri(n_part, k=-1, dtype=bool)  # within the chunk: only earlier (better) ones
        better &= other_classes[None, :] == class_id[part][:, None]
        keep[part] = ~np.any(better & ~(iou <= iou_threshold), axis=1)
        seen_boxes, seen_classes = others, other_classes
        if np.count_nonzero(keep) >= wanted:
            break
    kept = np.flatnonzero(keep)[:wanted]
    return anchor[kept], class_id[kept], score[kept]


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (n, 4), b (m, 4) → (n, m) IoU with the original jaccard's operations (no +1 on areas)."""
    rows = np.repeat(np.arange(len(a)), len(b))
    cols = np.tile(np.arange(len(b)), len(a))
    stacked = np.ascontiguousarray(np.concatenate([a, b]).T)
    return _pair_iou(stacked, rows, len(a) + cols).reshape(len(a), len(b))


def _per_class_candidates(scores, anchors, score_threshold, top_k) -> _Candidates:
    """Per class, its top_k anchors scoring above the threshold. scores (C, M) for the anchors with ids `anchors`.

    Fast NMS needs no more: the original also carries below-threshold boxes, but they rank below every box that
    passes the threshold, so they can only suppress boxes that are dropped anyway.
    """
    class_id, column = np.nonzero(scores > score_threshold)
    score = scores[class_id, column]
    order = np.lexsort((-score, class_id))  # stable: equal scores stay in anchor order
    class_id, column, score = class_id[order], column[order], score[order]
    top = np.arange(len(class_id)) - np.searchsorted(class_id, class_id) < top_k
    class_id = class_id[top]
    return _Candidates(anchors[column[top]], class_id, score[top], np.searchsorted(class_id, class_id))


def _best_class_candidates(scores, anchors, top_k) -> _Candidates:
    """The top_k anchors by their best class score, as one group. scores (C, M) for the anchors with ids `anchors`."""
    best = scores.max(axis=0)
    order = np.argsort(-best, kind="stable")[:top_k]
    return _Candidates(anchors[order], scores[:, order].argmax(axis=0), best[order], np.zeros(len(order), np.int64))


def _fast_nms(boxes: np.ndarray, group_start: np.ndarray, iou_threshold: float) -> np.ndarray:
    """(T,) keep flags of Fast NMS: a candidate goes if any higher-ranked one of its group, kept or not, overlaps
    it more than the threshold. boxes (T, 4) normalised, in candidate order.

    Instead of testing every pair, each candidate looks for a suppressor at rank distances 1, 2-3, 4-7, ... and
    stops at the first hit; most candidates sit in a cluster just below a better copy of themselves.
    """
    columns = np.ascontiguousarray(boxes.T)
    rank = np.arange(len(group_start)) - group_start
    keep = np.ones(len(group_start), bool)
    searching = np.flatnonzero(rank > 0)
    near = 1
    while len(searching):  # this round tests distances near .. 2*near - 1
        span = np.minimum(rank[searching], 2 * near - 1) - near + 1
        below = np.repeat(searching, span)
        above = below - near - np.arange(len(below)) + np.repeat(np.cumsum(span) - span, span)
        # "not <=" so that a NaN IoU (0/0 between empty boxes) suppresses, as the original's max-then-compare does.
        keep[below[~(_pair_iou(columns, above, below) <= iou_threshold)]] = False
        searching = searching[keep[searching] & (rank[searching] >= 2 * near)]
        near *= 2
    return keep


def _pair_iou(columns: np.ndarray, above: np.ndarray, below: np.ndarray) -> np.ndarray:
    """(4, T) box coordinates → (Q,) float32 IoU of boxes above[m] and below[m].

    The operations are those of the original `jaccard` (no +1 on areas), so threshold tests agree bit for bit.
    """
    a, b = columns[:, above], columns[:, below]
    inter_wh = np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2])
    np.maximum(inter_wh, 0, out=inter_wh)
    inter = inter_wh[0] * inter_wh[1]
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area_a + area_b - inter)


def _greedy_nms(boxes: np.ndarray, group_start: np.ndarray, iou_threshold: float) -> np.ndarray:
    """(T,) keep flags of classic greedy NMS within each group, run by OpenCV (C++) one group at a time.

    boxes (T, 4) normalised, in candidate order. OpenCV ranks by score; strictly decreasing stand-in scores make it
    follow our order exactly, ties included.
    """
    keep = np.zeros(len(boxes), bool)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).astype(np.float64)
    rank_scores = np.linspace(1, 0.5, len(boxes), dtype=np.float32)
    starts = np.unique(group_start).tolist()
    for start, end in zip(starts, starts[1:] + [len(boxes)]):
        kept = cv2.dnn.NMSBoxes(xywh[start:end], rank_scores[start:end], 0.0, float(iou_threshold))
        keep[start + np.ravel(kept).astype(np.int64)] = True
    return keep
