"""The stream runner: order kept, nothing dropped, the same detections as one call per frame."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from yolactedge.runtime import Detector
from yolactedge.runtime.stream import StreamStats, pipelined


def _jittery(delay_of):
    def stage(item):
        time.sleep(delay_of(item))
        return item
    return stage


def test_items_leave_in_order_whatever_each_stage_takes():
    rng = np.random.default_rng(0)
    delays = rng.uniform(0, 0.004, size=(3, 60))
    stages = [(f"s{i}", _jittery(lambda item, i=i: delays[i, item])) for i in range(3)]
    stats = StreamStats()
    assert list(pipelined(range(60), stages, stats=stats)) == list(range(60))
    assert stats.items == 60 and stats.dropped == 0 and set(stats.busy_s) == {"source", "s0", "s1", "s2"}


def test_stages_overlap():
    """Stages work on different items at the same time (measured by who is inside a stage, not by the clock)."""
    inside, most = [0], [0]
    lock = threading.Lock()

    def stage(item):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.01)
        with lock:
            inside[0] -= 1
        return item

    assert list(pipelined(range(15), [(f"s{i}", stage) for i in range(3)])) == list(range(15))
    assert most[0] >= 2


def test_an_error_in_a_stage_reaches_the_consumer_and_threads_end():
    def fail_on_five(item):
        if item == 5:
            raise ValueError("frame 5 is bad")
        return item

    before = threading.active_count()
    got = []
    with pytest.raises(ValueError, match="frame 5 is bad"):
        for item in pipelined(range(20), [("a", fail_on_five), ("b", lambda x: x)]):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]
    time.sleep(0.3)
    assert threading.active_count() <= before


def test_an_error_in_the_source_reaches_the_consumer():
    def frames():
        yield 1
        raise OSError("camera gone")

    with pytest.raises(OSError, match="camera gone"):
        list(pipelined(frames(), [("a", lambda x: x)]))


def test_closing_early_stops_every_thread():
    before = threading.active_count()
    stream = pipelined(iter(range(10**9)), [("a", lambda x: x), ("b", lambda x: x)])
    assert next(stream) == 0
    stream.close()
    time.sleep(0.3)
    assert threading.active_count() <= before


def test_latest_drops_stale_frames_but_keeps_order():
    def camera():
        for i in range(50):
            time.sleep(0.001)
            yield i

    stats = StreamStats()
    got = list(pipelined(camera(), [("slow", _jittery(lambda _: 0.01))], latest=True, stats=stats))
    assert got == sorted(got) and got[-1] == 49 and stats.dropped > 10 and len(got) + stats.dropped == 50


def test_stream_gives_the_detections_of_one_call_per_frame(tiny_onnx, scenes):
    detector = Detector(tiny_onnx, score_threshold=0.05)
    frames = [scenes[i % len(scenes)] for i in range(9)]
    one_by_one = [detector(frame).detections for frame in frames]
    streamed = list(detector.stream((f"f{i}", frame) for i, frame in enumerate(frames)))
    assert [p.source for p in streamed] == [f"f{i}" for i in range(9)]
    for single, prediction in zip(one_by_one, streamed):
        assert len(single) > 0 and prediction.track_ids is None
        np.testing.assert_array_equal(single.boxes, prediction.detections.boxes)
        np.testing.assert_array_equal(single.scores, prediction.detections.scores)
        np.testing.assert_array_equal(single.masks, prediction.detections.masks)


def test_stream_with_tracking_gives_ids_for_every_kept_detection(tiny_onnx, scenes):
    detector = Detector(tiny_onnx, score_threshold=0.3)
    predictions = list(detector.stream([scenes[0]] * 5, track=True))
    assert all(p.track_ids is not None and len(p.track_ids) == len(p) for p in predictions)
    last = predictions[-1]
    strong = last.detections.scores >= 0.4  # new tracks start 0.1 above the score threshold, as ByteTrack's
    assert strong.any() and (last.track_ids[strong] > 0).all()  # a still scene: all of them tracked by frame 5
    assert [p.track_ids.tolist() for p in predictions[2:]] == [last.track_ids.tolist()] * 3


def test_a_tracked_prediction_names_its_tracks(tiny_onnx, scenes):
    predictions = list(Detector(tiny_onnx, score_threshold=0.3).stream([scenes[0]] * 3, track=True))
    ids = sorted(i for i in predictions[-1].track_ids.tolist() if i >= 0)
    assert ids and predictions[-1].summary().split(" (")[0].endswith("tracks " + " ".join(map(str, ids)))
