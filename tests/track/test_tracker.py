"""The tracker on crafted scenes with known identities: crossings, occlusions, weak detections, classes."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yolactedge.postprocessing import Detections
from yolactedge.track import UNTRACKED, Tracker, TrackerConfig
from yolactedge.track.association import assign, box_iou, mask_iou

SIZE = (120, 200)


def frame(objects: list[tuple[float, float, float, int, float]]) -> Detections:
    """objects: (cx, cy, radius, class_id, score) discs; a later disc hides what it covers of earlier ones."""
    yy, xx = np.mgrid[:SIZE[0], :SIZE[1]]
    masks = [(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r for cx, cy, r, _, _ in objects]
    for i in range(len(masks)):
        for later in masks[i + 1:]:
            masks[i] = masks[i] & ~later
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else [0, 0, 0, 0])
    return Detections.from_masks(np.array(boxes, np.float32).reshape(-1, 4), [o[4] for o in objects],
                                 [o[3] for o in objects], np.array(masks).reshape(-1, *SIZE))


def test_two_objects_crossing_keep_their_identities():
    tracker = Tracker()
    seen = {"right": set(), "left": set()}
    for t in range(30):
        right, left = (20 + 5 * t, 60, 14, 0, 0.9), (170 - 5 * t, 62, 14, 0, 0.9)
        ids = tracker.update(frame([right, left]))
        seen["right"].add(int(ids[0]))
        seen["left"].add(int(ids[1]))
    assert len(seen["right"]) == 1 and len(seen["left"]) == 1 and seen["right"] != seen["left"]


def test_identity_survives_a_full_occlusion_within_max_lost():
    tracker = Tracker(TrackerConfig(max_lost=8))
    ids = []
    for t in range(24):
        visible = not 8 <= t < 14  # hidden for 6 frames, moving on meanwhile
        ids.append(tracker.update(frame([(30 + 4 * t, 50, 12, 2, 0.8)] if visible else [])))
    tracked = {int(i[0]) for i in ids if len(i)}
    assert tracked == {1}


def test_a_track_lost_longer_than_max_lost_comes_back_with_a_new_id():
    tracker = Tracker(TrackerConfig(max_lost=2))
    first = [tracker.update(frame([(50, 50, 12, 0, 0.9)])) for _ in range(3)]
    for _ in range(4):
        tracker.update(frame([]))
    again = [tracker.update(frame([(50, 50, 12, 0, 0.9)])) for _ in range(3)]
    assert first[-1][0] == 1
    assert again[0][0] == UNTRACKED and again[-1][0] == 2  # tentative for one frame, then a new identity


def test_weak_detections_keep_a_track_but_never_start_one():
    tracker = Tracker()
    scores = [0.9, 0.9, 0.2, 0.2, 0.2, 0.9]
    ids = [int(tracker.update(frame([(40 + 3 * t, 60, 15, 1, s)]))[0]) for t, s in enumerate(scores)]
    assert ids == [1, 1, 1, 1, 1, 1]
    lone = Tracker()
    assert [int(lone.update(frame([(40, 60, 15, 1, 0.2)]))[0]) for _ in range(3)] == [UNTRACKED] * 3


def test_class_changes_continue_a_track_only_when_allowed():
    strict = Tracker(TrackerConfig(min_hits=1, other_class=0.0))
    a = strict.update(frame([(60, 60, 15, 0, 0.9)]))
    b = strict.update(frame([(61, 60, 15, 3, 0.9)]))
    assert a[0] != b[0]
    lenient = Tracker(TrackerConfig(min_hits=1))  # a class flip of the same object keeps its identity
    assert lenient.update(frame([(60, 60, 15, 0, 0.9)]))[0] == lenient.update(frame([(61, 60, 15, 3, 0.9)]))[0]


def test_an_object_found_as_two_classes_starts_one_track():
    one = frame([(60, 60, 15, 0, 0.9)])
    both = Detections.from_masks(np.repeat(one.boxes, 2, 0), [0.9, 0.7], [0, 1], np.repeat(one.masks, 2, 0))
    tracker = Tracker.at_threshold(0.3)
    for _ in range(3):
        detections, ids = tracker.track(both, 0.3)
    assert len(detections) == 1 and detections.class_ids.tolist() == [0] and ids.tolist() == [1]


def test_masks_decide_between_objects_with_the_same_box():
    """Two triangles filling one square share their box exactly: only the masks tell them apart."""
    yy, xx = np.mgrid[:SIZE[0], :SIZE[1]]
    tracker = Tracker(TrackerConfig(min_hits=1))
    history = []
    for t in range(6):
        x0 = 60 + 2 * t
        inside = (xx >= x0) & (xx < x0 + 40) & (yy >= 30) & (yy < 70)
        upper = inside & (xx - x0 > yy - 30)
        lower = inside & ~upper
        box = [x0, 30, x0 + 40, 70]
        names = ["upper", "lower"] if t % 2 else ["lower", "upper"]  # detection order flips every frame
        masks = np.array([upper, lower] if t % 2 else [lower, upper])
        ids = tracker.update(Detections.from_masks(np.array([box, box], np.float32), [0.9, 0.9], [0, 0], masks))
        history.append(dict(zip(names, ids.tolist())))
    assert len({h["upper"] for h in history}) == 1 and len({h["lower"] for h in history}) == 1


@settings(max_examples=40, deadline=None)
@given(st.floats(-6, 6), st.floats(-4, 4), st.integers(8, 20), st.integers(5, 15))
def test_one_smoothly_moving_object_keeps_one_identity(vx, vy, radius, frames):
    tracker = Tracker()
    ids = set()
    for t in range(frames):
        ids.add(int(tracker.update(frame([(100 + vx * t, 60 + vy * t, radius, 0, 0.9)]))[0]))
    assert ids == {1}


def test_association_primitives():
    assert box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10], [20, 20, 30, 30]]).tolist() == [[pytest.approx(1 / 3), 0.0]]
    crop = np.ones((10, 10), bool)
    assert mask_iou(crop, (0, 0, 10, 10), crop, (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert mask_iou(crop, (0, 0, 10, 10), crop, (5, 0, 15, 10), shift=(-5, 0)) == 1.0
    rows, cols = assign(np.array([[0.9, 0.8], [0.85, 0.1]]), minimum=0.3)
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]  # the best total, not the greedy first pick
    rows, _ = assign(np.array([[0.1]]), minimum=0.3)
    assert len(rows) == 0


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="low_score <= high_score"):
        TrackerConfig(high_score=0.2, low_score=0.5)
    with pytest.raises(ValueError, match="min_hits"):
        TrackerConfig(min_hits=0)
