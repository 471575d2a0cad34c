"""Video mode of the Detector (keyframe_interval > 1): the schedule, the state it keeps, and misuse errors;
PyTorch runs the model's own key_frame / warped_frame, ONNX Runtime the exported key/warped graph pair."""
from __future__ import annotations

import numpy as np
import pytest

from yolactedge.runtime import Detector, ModelError

LOW_THRESHOLD = 0.05  # the tiny video model's 40 classes score ~0.1: keep enough detections to compare


def kinds(predictions) -> list[str | None]:
    return [p.frame for p in predictions]


@pytest.fixture(scope="module")
def torch_video(tiny_video_model) -> Detector:
    return Detector(tiny_video_model, keyframe_interval=3, score_threshold=LOW_THRESHOLD)


def test_torch_frames_follow_the_schedule_and_the_models_own_video_api(torch_video, tiny_video_model, video_frames):
    import torch

    torch_video.reset()
    raws = [torch_video.raw(frame) for frame in video_frames[:5]]
    tensors = [torch.from_numpy(torch_video.preprocess(frame)) for frame in video_frames[:5]]
    with torch.inference_mode():
        expected = []
        for index, tensor in enumerate(tensors):
            if index % 3 == 0:
                outputs, memory = tiny_video_model.key_frame(tensor)
            else:
                outputs = tiny_video_model.warped_frame(tensor, memory)
            expected.append([o.numpy() for o in outputs])
    for raw, reference in zip(raws, expected):
        for got, want in zip(raw, reference):
            np.testing.assert_array_equal(got, want)
    # Warped frames differ from what the whole network computes on the same frame.
    assert not np.allclose(raws[1].scores, Detector(tiny_video_model).raw(video_frames[1]).scores, atol=1e-4)


def test_calls_in_sequence_keep_the_state_until_reset(torch_video, video_frames):
    torch_video.reset()
    first = [torch_video(frame) for frame in video_frames[:7]]
    assert kinds(first) == ["key", "warped", "warped", "key", "warped", "warped", "key"]
    torch_video.reset()
    again = torch_video(video_frames[1])
    assert again.frame == "key" and "key frame" in again.summary()


def test_stream_starts_a_video_each_time(torch_video, video_frames):
    torch_video.reset()
    torch_video(video_frames[0])  # mid-video state the stream must not inherit
    runs = [list(torch_video.stream(video_frames[:5])) for _ in range(2)]
    assert kinds(runs[0]) == kinds(runs[1]) == ["key", "warped", "warped", "key", "warped"]
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a.detections.scores, b.detections.scores)
    assert sum(len(p) for p in runs[0]) > 0


def test_image_mode_is_unchanged_for_a_video_model(tiny_video_model, tiny_model, video_frames):
    predictions = [Detector(tiny_video_model)(f) for f in video_frames[:2]]
    assert kinds(predictions) == [None, None]
    assert Detector(tiny_model)(video_frames[0]).frame is None


@pytest.mark.parametrize("interval", [0, -2, 2.5, True, "5"])
def test_bad_intervals_are_refused(tiny_video_model, interval):
    with pytest.raises(ModelError, match="keyframe_interval must be a positive integer") as exc:
        Detector(tiny_video_model, keyframe_interval=interval)
    assert "\n" not in str(exc.value)


def test_an_image_model_refuses_video_mode(tiny_model, tiny_onnx):
    for model in (tiny_model, tiny_onnx):
        with pytest.raises(ModelError, match="video model") as exc:
            Detector(model, keyframe_interval=5)
        assert "\n" not in str(exc.value)
