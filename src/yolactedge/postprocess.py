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

import functools
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Sequence

import cv2
import numpy as np

NmsMode = Literal["fast", "standard", "class_agnostic"]
_NMS_MODES = ("fast", "standard", "class_agnostic")


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

    def summary(self, class_names: Sequence[str]) -> str:
        """One line such as "2 circle, 1 star" (most frequent class first)."""
        if len(self) == 0:
            return "no detections"
        names = (class_names[c] if c < len(class_names) else f"class {c}" for c in self.class_ids.tolist())
        return ", ".join(f"{count} {name}" for name, count in Counter(names).most_common())

    def to_coco_json(self, image_id: int, category_ids: Sequence[int] | None = None) -> list[dict]:
        """COCO result dicts: bbox as x, y, w, h; category_id = category_ids[class_id], else class_id + 1."""
        from pycocotools import mask as mask_utils  # only evaluation needs pycocotools

        frame = np.zeros(self.image_size, np.uint8, order="F")  # one full-frame buffer, reused per mask
        results = []
        for box, score, class_id, crop, (x1, y1, x2, y2) in zip(
                self.boxes.tolist(), self.scores.tolist(), self.class_ids.tolist(), self.mask_crops,
                self.mask_boxes.tolist()):
            frame[y1:y2, x1:x2] = crop
            rle = mask_utils.encode(frame)
            frame[y1:y2, x1:x2] = 0
            rle["counts"] = rle["counts"].decode("ascii")
            results.append({
                "image_id": image_id,
                "category_id": int(category_ids[class_id]) if category_ids is not None else class_id + 1,
                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                "score": score,
                "segmentation": rle,
            })
        return results


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
    if nms not in _NMS_MODES:
        raise ValueError(f"nms must be one of {_NMS_MODES}, got {nms!r}")
    height, width = (int(v) for v in image_size)
    if height <= 0 or width <= 0:
        raise ValueError(f"image_size must be positive (height, width), got {image_size}")
    if not 0 < mask_threshold < 1:
        raise ValueError(f"mask_threshold must lie in (0, 1), got {mask_threshold}")
    boxes, scores, masks, proto = _check_inputs(boxes, scores, masks, proto)

    anchors, class_ids, kept_scores = _select(boxes, scores, score_threshold, iou_threshold, nms, top_k,
                                              max_detections, second_threshold)
    kept_boxes = boxes[anchors]
    mask_boxes, mask_crops = _mask_crops(masks[anchors], proto, kept_boxes, (height, width), mask_threshold)
    return Detections(
        boxes=_to_pixels(kept_boxes, height, width),
        scores=kept_scores.astype(np.float32),
        class_ids=class_ids.astype(np.int64),
        mask_boxes=mask_boxes,
        mask_crops=mask_crops,
        image_size=(height, width),
    )


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


# --- choosing detections -------------------------------------------------------------------------------------

class _Candidates(NamedTuple):
    """T NMS candidates sorted by group (a class, or a single group), then score descending, then anchor id.

    group_start[t] is the index of the first candidate of t's group, so t - group_start[t] is its rank there.
    """

    anchor: np.ndarray
    class_id: np.ndarray
    score: np.ndarray
    group_start: np.ndarray


def _select(boxes, scores, score_threshold, iou_threshold, nms, top_k, max_detections, second_threshold=True):
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


# --- boxes and masks -------------------------------------------------------------------------------------------

def _to_pixels(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(K, 4) normalised → float32 whole-pixel boxes: ordered, scaled, clipped, truncated as the original does."""
    x = boxes[:, 0::2] * np.float32(width)
    y = boxes[:, 1::2] * np.float32(height)
    out = np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], axis=1)
    np.clip(out, 0, np.array([width, height, width, height], np.float32), out=out)
    return np.trunc(out)


def _proto_crop(boxes: np.ndarray, proto_h: int, proto_w: int) -> np.ndarray:
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


def _mask_crops(coeffs, proto, boxes, image_size, mask_threshold) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
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
    cells = _proto_crop(boxes, proto_h, proto_w)
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
