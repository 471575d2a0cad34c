"""postprocess: hand-checked NMS cases, properties of every NMS mode, boxes, masks against a full-frame reference."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yolactedge.postprocessing import Detections, postprocess

GRID = 64  # boxes on a 1/64 grid and a 64×64 image: pixel boxes are exact, IoUs far from float rounding
SIZE = (GRID, GRID)


def raw_outputs(boxes_px, scores, proto_size=8, num_protos=2):
    """Raw outputs for boxes given in 1/64 units and scores (C, N); masks are positive inside every crop."""
    n = len(boxes_px)
    return {
        "boxes": np.asarray(boxes_px, np.float32).reshape(n, 4) / GRID,
        "scores": np.asarray(scores, np.float32).reshape(-1, n),
        "masks": np.full((n, num_protos), 0.5, np.float32),
        "proto": np.ones((proto_size, proto_size, num_protos), np.float32),
    }


def iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# A chain along x: IoU(A, B) = IoU(B, C) = 0.6, IoU(A, C) = 1/3. D is A's box for class 1; E is weak everywhere.
A, B, C, E = [0, 0, 32, 32], [8, 0, 40, 32], [16, 0, 48, 32], [40, 40, 60, 60]
CHAIN = raw_outputs([A, B, C, A, E], [[0.9, 0.8, 0.7, 0.01, 0.04],
                                      [0.02, 0.01, 0.01, 0.6, 0.03]])


@pytest.mark.parametrize("nms, boxes, classes, scores", [
    # Fast NMS: C goes because B outranks and overlaps it, although B itself is suppressed by A.
    ("fast", [A, A], [0, 1], [0.9, 0.6]),
    ("standard", [A, C, A], [0, 0, 1], [0.9, 0.7, 0.6]),
    # One NMS over all classes: D (class 1) sits exactly on A and goes.
    ("class_agnostic", [A, C], [0, 0], [0.9, 0.7]),
])
def test_nms_modes_on_a_chain(nms, boxes, classes, scores):
    det = postprocess(**CHAIN, image_size=SIZE, nms=nms)
    np.testing.assert_array_equal(det.boxes, np.asarray(boxes, np.float32))
    np.testing.assert_array_equal(det.class_ids, classes)
    np.testing.assert_allclose(det.scores, scores, rtol=1e-6)


def test_second_threshold_drops_weak_classes_of_strong_anchors():
    # Anchor 3 enters through class 1 (0.6) but its class-0 score 0.01 must not become a detection.
    det = postprocess(**CHAIN, image_size=SIZE, nms="fast", score_threshold=0.05)
    assert (det.scores > 0.05).all()


def test_top_k_and_max_detections():
    det = postprocess(**CHAIN, image_size=SIZE, nms="standard", top_k=1)
    np.testing.assert_array_equal(det.class_ids, [0, 1])  # one candidate per class: A, D
    det = postprocess(**CHAIN, image_size=SIZE, nms="standard", max_detections=2)
    np.testing.assert_allclose(det.scores, [0.9, 0.7], rtol=1e-6)


def test_fast_nms_keeps_lower_boxes_that_only_touch():
    # IoU exactly 0.5 is not "above" the threshold: both stay.
    raw = raw_outputs([[0, 0, 32, 32], [0, 0, 32, 16]], [[0.9, 0.8]])
    assert len(postprocess(**raw, image_size=SIZE, nms="fast", iou_threshold=0.5)) == 2
    assert len(postprocess(**raw, image_size=SIZE, nms="fast", iou_threshold=0.49)) == 1


def test_boxes_are_ordered_clipped_and_truncated():
    raw = raw_outputs([[-13, -6, 83, 32], [40.7, 30.2, 10.5, 20.9]], [[0.9, 0.8]])
    det = postprocess(**raw, image_size=SIZE)
    np.testing.assert_array_equal(det.boxes, [[0, 0, 64, 32], [10, 20, 40, 30]])
    assert det.boxes.dtype == np.float32


def test_box_scaling_to_non_square_images():
    raw = raw_outputs([[16, 8, 48, 32]], [[0.9]])
    det = postprocess(**raw, image_size=(100, 200))
    np.testing.assert_array_equal(det.boxes, [[50, 12, 150, 50]])  # x·200/64, y·100/64, truncated


def test_nothing_above_threshold_gives_empty_arrays():
    raw = raw_outputs([A, B], [[0.05, 0.01], [0.02, 0.049]])
    for nms in ("fast", "standard", "class_agnostic"):
        det = postprocess(**raw, image_size=(30, 40), nms=nms)
        assert len(det) == 0
        assert det.boxes.shape == (0, 4) and det.boxes.dtype == np.float32
        assert det.scores.shape == (0,) and det.scores.dtype == np.float32
        assert det.class_ids.shape == (0,) and det.class_ids.dtype == np.int64
        assert det.masks.shape == (0, 30, 40) and det.masks.dtype == bool
        assert det.summary(["a", "b"]) == "no detections" and det.to_coco_json(1) == []


def test_inputs_are_not_modified_and_batched_inputs_work():
    raw = realistic_outputs(np.random.default_rng(1))
    before = {k: v.copy() for k, v in raw.items()}
    det = postprocess(**raw, image_size=(90, 120))
    for key in raw:
        np.testing.assert_array_equal(raw[key], before[key])
    batched = postprocess(**{k: v[None] for k, v in raw.items()}, image_size=(90, 120))
    for name in ("boxes", "scores", "class_ids", "masks"):
        np.testing.assert_array_equal(getattr(det, name), getattr(batched, name))


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="nms"):
        postprocess(**CHAIN, image_size=SIZE, nms="soft")
    with pytest.raises(ValueError, match="inconsistent"):
        postprocess(CHAIN["boxes"], CHAIN["scores"][:, :3], CHAIN["masks"], CHAIN["proto"], SIZE)


# --- masks ---------------------------------------------------------------------------------------------------

def realistic_outputs(rng, n=12, proto=(23, 29), num_protos=4):
    """One anchor per class with distinct scores, so every anchor becomes a detection, best first."""
    centres, sizes = rng.uniform(0, 1, (n, 2)), rng.uniform(0.05, 0.7, (n, 2))
    return {
        "boxes": np.concatenate([centres - sizes / 2, centres + sizes / 2], 1).astype(np.float32),
        "scores": np.diag(np.linspace(0.9, 0.3, n)).astype(np.float32),
        "masks": np.tanh(rng.normal(0, 2, (n, num_protos))).astype(np.float32),
        "proto": np.maximum(rng.normal(0.3, 1, (*proto, num_protos)), 0).astype(np.float32),
    }


def reference_masks(raw, image_size):
    """The original's mask path at full frame: crop rule, full-map cv2 bilinear resize, threshold 0.5."""
    height, width = image_size
    proto, boxes = raw["proto"], raw["boxes"]
    proto_h, proto_w, _ = proto.shape
    maps = 1 / (1 + np.exp(-(proto @ raw["masks"].T)))  # (Hp, Wp, K)
    out = []
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        def keep(a, b, size):
            lo = max(min(a, b) * np.float32(size) - np.float32(1), 0)
            hi = min(max(a, b) * np.float32(size) + np.float32(1), size)
            cells = np.arange(size, dtype=np.float32)
            return (cells >= lo) & (cells < hi)
        cropped = maps[:, :, k] * (keep(y1, y2, proto_h)[:, None] & keep(x1, x2, proto_w)[None, :])
        out.append(cv2.resize(cropped.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR) > 0.5)
    return np.stack(out)


# (23, 29) is the prototype size; (24, 29) and (25, 31) hit cv2.resize's copy shortcut for same-size outputs.
@pytest.mark.parametrize("image_size", [(90, 120), (331, 517), (17, 13), (23, 29), (24, 29), (25, 31), (1080, 1920)])
def test_footprint_masks_equal_full_frame_resize(image_size):
    rng = np.random.default_rng(sum(image_size))
    raw = realistic_outputs(rng)
    det = postprocess(**raw, image_size=image_size, score_threshold=0.1)
    assert len(det) == 12
    reference = reference_masks(raw, image_size)
    inter, union = (det.masks & reference).sum((1, 2)), (det.masks | reference).sum((1, 2))
    assert (inter >= 0.999 * union).all()
    assert (det.masks != reference).sum() <= 2  # float rounding at exactly 0.5 at most
    for k, (x1, y1, x2, y2) in enumerate(det.mask_boxes):
        assert not det.masks[k].sum() - det.masks[k, y1:y2, x1:x2].sum()  # nothing outside its region


@settings(max_examples=60, deadline=None)
@given(height=st.integers(1, 300), width=st.integers(1, 300), proto_h=st.integers(2, 40),
       proto_w=st.integers(2, 40), seed=st.integers(0, 2**16))
def test_footprint_masks_equal_full_frame_resize_at_any_scale(height, width, proto_h, proto_w, seed):
    raw = realistic_outputs(np.random.default_rng(seed), n=5, proto=(proto_h, proto_w))
    raw["boxes"] = raw["boxes"] * 1.4 - 0.2  # some boxes poke out of the image, some miss it
    det = postprocess(**raw, image_size=(height, width), score_threshold=0.1)
    assert [crop.shape for crop in det.mask_crops] == [(y2 - y1, x2 - x1) for x1, y1, x2, y2 in det.mask_boxes]
    reference = reference_masks(raw, (height, width))
    assert (det.masks != reference).sum() <= 2


def test_mask_threshold_and_dtype():
    raw = realistic_outputs(np.random.default_rng(3))
    loose = postprocess(**raw, image_size=(60, 80), mask_threshold=0.3).masks
    strict = postprocess(**raw, image_size=(60, 80), mask_threshold=0.7).masks
    assert loose.dtype == bool and loose.shape == (12, 60, 80)
    assert (strict <= loose).all() and strict.sum() < loose.sum()


# --- Detections helpers ------------------------------------------------------------------------------------------

def test_summary_len_and_coco_json():
    from pycocotools import mask as mask_utils

    det = postprocess(**CHAIN, image_size=SIZE, nms="standard")
    assert len(det) == 3
    assert det.summary(["circle", "star"]) == "2 circle, 1 star"
    results = det.to_coco_json(7, category_ids=[5, 9])
    assert [r["category_id"] for r in results] == [5, 5, 9]
    assert [r["category_id"] for r in det.to_coco_json(7)] == [1, 1, 2]
    assert results[1]["bbox"] == [16.0, 0.0, 32.0, 32.0] and results[0]["image_id"] == 7
    assert isinstance(results[0]["segmentation"]["counts"], str)
    for result, mask in zip(results, det.masks):
        rle = dict(result["segmentation"], counts=result["segmentation"]["counts"].encode())
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), mask)


def test_from_masks_round_trip():
    det = postprocess(**realistic_outputs(np.random.default_rng(4)), image_size=(50, 70))
    again = Detections.from_masks(det.boxes, det.scores, det.class_ids, det.masks)
    assert again.masks is det.masks and again.image_size == (50, 70)
    rebuilt = Detections(again.boxes, again.scores, again.class_ids, again.mask_boxes, again.mask_crops,
                         again.image_size)
    np.testing.assert_array_equal(rebuilt.masks, det.masks)


# --- properties --------------------------------------------------------------------------------------------------

coordinate = st.integers(-8, GRID + 8)


@st.composite
def nms_cases(draw):
    n = draw(st.integers(1, 20))
    num_classes = draw(st.integers(1, 3))
    boxes = []
    for _ in range(n):
        x1, y1 = draw(coordinate), draw(coordinate)
        boxes.append([x1, y1, x1 + draw(st.integers(1, 40)), y1 + draw(st.integers(1, 40))])
    scores = draw(st.lists(st.lists(st.sampled_from([0.0, 0.03, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9]),
                                    min_size=n, max_size=n), min_size=num_classes, max_size=num_classes))
    thresholds = draw(st.sampled_from([0.3, 0.5, 0.7])), draw(st.integers(1, 8)), draw(st.integers(1, 25))
    return raw_outputs(boxes, scores, proto_size=4), *thresholds


def reference_nms(raw, nms, iou_threshold, max_detections, score_threshold=0.05, top_k=200):
    """Plain-loop NMS on the definitions: → sorted list of (score, class, box) kept."""
    boxes, scores = raw["boxes"].astype(np.float64) * GRID, raw["scores"]
    score_threshold = np.float32(score_threshold)  # compared in float32, as the model's scores are
    entering = [a for a in range(len(boxes)) if scores[:, a].max() > score_threshold]
    if nms == "class_agnostic":
        groups = [[(scores[:, a].max(), int(scores[:, a].argmax()), a) for a in entering]]
    else:
        groups = [[(scores[c, a], c, a) for a in entering if scores[c, a] > score_threshold]
                  for c in range(len(scores))]
    kept = []
    for group in groups:
        ranked = sorted(group, key=lambda t: (-t[0], t[2]))[:top_k]
        survivors = []
        for j, (s, c, a) in enumerate(ranked):
            rivals = ranked[:j] if nms == "fast" else survivors
            if all(iou(boxes[r[2]], boxes[a]) <= iou_threshold for r in rivals):
                survivors.append((s, c, a))
        kept += survivors
    kept.sort(key=lambda t: -t[0])
    return kept[:max_detections]


def as_rows(det):
    return sorted(zip(det.scores.tolist(), det.class_ids.tolist(), map(tuple, det.boxes.tolist())))


@settings(max_examples=150, deadline=None)
@given(case=nms_cases(), nms=st.sampled_from(["fast", "standard", "class_agnostic"]))
def test_nms_matches_plain_loop_reference(case, nms):
    raw, iou_threshold, max_detections, top_k = case
    det = postprocess(**raw, image_size=SIZE, nms=nms, iou_threshold=iou_threshold, max_detections=max_detections,
                      top_k=top_k)
    assert as_rows(det) == expected_rows(raw, reference_nms(raw, nms, iou_threshold, max_detections, top_k=top_k))


def expected_rows(raw, kept):
    """Rows of as_rows() for the reference's (score, class, anchor) triples."""
    boxes = np.clip(raw["boxes"] * GRID, 0, GRID)
    ordered = [np.concatenate([np.minimum(b[:2], b[2:]), np.maximum(b[:2], b[2:])]) for b in boxes]
    return sorted((float(s), c, tuple(ordered[a].tolist())) for s, c, a in kept)


@pytest.mark.parametrize("seed", range(4))
def test_fast_nms_in_large_clusters(seed):
    # 200 candidates per class (top_k), so suppressors sit at every rank distance the search doubles through.
    rng = np.random.default_rng(seed)
    centres = rng.integers(8, 56, (6, 2))[rng.integers(0, 6, 300)] + rng.integers(-3, 4, (300, 2))
    half = rng.integers(2, 9, (300, 2))
    boxes = np.concatenate([centres - half, centres + half], axis=1)
    scores = np.round(rng.uniform(0.06, 1, (2, 300)), 3)  # rounded: ties too
    raw = raw_outputs(boxes.tolist(), scores, proto_size=4)
    det = postprocess(**raw, image_size=SIZE, nms="fast", max_detections=1000)
    assert as_rows(det) == expected_rows(raw, reference_nms(raw, "fast", 0.5, 1000))


@settings(max_examples=150, deadline=None)
@given(case=nms_cases(), nms=st.sampled_from(["fast", "standard", "class_agnostic"]))
def test_nms_properties(case, nms):
    raw, iou_threshold, max_detections, _ = case
    det = postprocess(**raw, image_size=SIZE, nms=nms, iou_threshold=iou_threshold, max_detections=max_detections)
    assert len(det) <= max_detections
    assert (np.diff(det.scores) <= 0).all() and (det.scores > 0.05).all()
    assert ((det.boxes >= 0) & (det.boxes <= GRID)).all()
    inside = ((det.boxes > 0) & (det.boxes < GRID)).all(1)  # unclipped, so their overlaps are the inputs'
    for i in range(len(det)):
        for j in range(i):
            same_group = nms == "class_agnostic" or det.class_ids[i] == det.class_ids[j]
            if same_group and inside[i] and inside[j]:
                assert iou(det.boxes[i], det.boxes[j]) <= iou_threshold


@settings(max_examples=100, deadline=None)
@given(case=nms_cases())
def test_fast_nms_keeps_a_subset_of_greedy_nms(case):
    raw, iou_threshold, _, _ = case
    fast = postprocess(**raw, image_size=SIZE, nms="fast", iou_threshold=iou_threshold, max_detections=1000)
    greedy = postprocess(**raw, image_size=SIZE, nms="standard", iou_threshold=iou_threshold, max_detections=1000)
    assert set(map(tuple, as_rows(fast))) <= set(map(tuple, as_rows(greedy)))


def test_fast_nms_without_second_threshold_fills_like_the_original():
    # Anchor 0: class 0 at 0.9. Anchor 1: class 1 at 0.8 and class 0 at 0.04 (below the threshold), far from
    # anchor 0. Anchor 2: class 1 at 0.7 and class 0 at 0.03, on top of anchor 0.
    boxes = np.array([[0.0, 0.0, 0.2, 0.2], [0.6, 0.6, 0.9, 0.9], [0.0, 0.0, 0.21, 0.2]], np.float32)
    scores = np.array([[0.9, 0.04, 0.03], [0.01, 0.8, 0.7]], np.float32)
    coeffs = np.zeros((3, 4), np.float32)
    proto = np.zeros((8, 8, 4), np.float32)
    strict = postprocess(boxes, scores, coeffs, proto, (50, 50), mask_threshold=0.4)
    assert [(int(c), round(float(s), 3)) for c, s in zip(strict.class_ids, strict.scores)] == [(0, 0.9), (1, 0.8), (1, 0.7)]
    original = postprocess(boxes, scores, coeffs, proto, (50, 50), mask_threshold=0.4, second_threshold=False)
    found = [(int(c), round(float(s), 3)) for c, s in zip(original.class_ids, original.scores)]
    # Class 1's anchor 2 overlaps nothing of class 1 above it: kept. Class 0's anchor 1 (0.04) is kept too; its
    # anchor 2 (0.03) overlaps the 0.9 box and goes. Sub-threshold boxes come last, by score.
    assert found == [(0, 0.9), (1, 0.8), (1, 0.7), (0, 0.04)]
