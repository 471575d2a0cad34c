"""Video mode of the Detector (keyframe_interval > 1): the schedule, the state it keeps, and misuse errors;
PyTorch runs the model's own key_frame / warped_frame, ONNX Runtime the exported key/warped graph pair."""
from __future__ import annotations

import numpy as np
import pytest

from yolactedge.runtime import Detector, ModelError

LOW_THRESHOLD = 0.05  # the tiny video model's 40 classes score ~0.1: keep enough detections to compare


def kinds(predictions) -> list[str | None]:
    return [p.frame for p in predictions]


def assert_same_stream(ours, reference) -> None:
    """Key and warped frames in the same places, with the same classes and scores, warped frames not empty."""
    assert kinds(ours) == kinds(reference) == ["key", "warped", "warped"] * 2 + ["key", "warped"]
    for got, want in zip(ours, reference):
        assert len(got) == len(want)
        np.testing.assert_array_equal(got.detections.class_ids, want.detections.class_ids)
        np.testing.assert_allclose(got.detections.scores, want.detections.scores, rtol=0, atol=1e-5)
    assert sum(len(p) for p in ours[1:3]) > 0  # warped frames were compared on real detections


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
    assert "a key frame every 3 frames" in torch_video.describe()


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


# --- ONNX Runtime: the exported key/warped pair ---------------------------------------------------------------------

def _onnx_pair(model, path):
    """`model` exported as an ONNX key/warped pair at `path` → `path`."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxsim")
    from yolactedge.export.onnx_video import export_video_onnx

    export_video_onnx(model, path, progress=False)
    return path


@pytest.fixture(scope="module")
def video_onnx(tiny_video_model, model_dir):
    return _onnx_pair(tiny_video_model, model_dir / "tiny_video.onnx")


def test_onnx_pair_runs_the_video_like_torch(video_onnx, torch_video, video_frames):
    onnx_video = Detector(video_onnx, keyframe_interval=3, score_threshold=LOW_THRESHOLD)
    ours, reference = list(onnx_video.stream(video_frames)), list(torch_video.stream(video_frames))
    assert_same_stream(ours, reference)
    for got, want in zip(ours, reference):
        np.testing.assert_allclose(got.detections.boxes, want.detections.boxes, rtol=0, atol=1)  # whole pixels
    onnx_video.reset()
    torch_video.reset()
    for frame in video_frames[:3]:
        for got, want in zip(onnx_video.raw(frame), torch_video.raw(frame)):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())


def test_the_key_frame_graph_alone_is_an_image_model(video_onnx, tiny_video_model, video_frames):
    got = Detector(video_onnx).raw(video_frames[0])
    want = Detector(tiny_video_model).raw(video_frames[0])
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(b).max())


def test_a_missing_or_misused_partner_is_a_one_line_error(video_onnx, tmp_path):
    from yolactedge.runtime.tensors import warped_graph_path

    lonely = tmp_path / "alone.onnx"
    lonely.write_bytes(video_onnx.read_bytes())
    Detector(lonely)  # image mode needs no partner
    with pytest.raises(ModelError, match="alone_warp.onnx is missing") as exc:
        Detector(lonely, keyframe_interval=5)
    assert "\n" not in str(exc.value)
    with pytest.raises(ModelError, match=r"warped-frame graph of a video model; open its key-frame graph .*tiny_video"):
        Detector(warped_graph_path(video_onnx))


# --- the pair that carries prototypes (ours) ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def carrying_model(tiny_video_model):
    from yolactedge.model.build import with_config

    return with_config(tiny_video_model, carry_protos=True)


@pytest.fixture(scope="module")
def carried_onnx(carrying_model, model_dir):
    return _onnx_pair(carrying_model, model_dir / "tiny_carried.onnx")


def test_carried_pairs_run_the_video_like_the_carrying_torch_model(carried_onnx, carrying_model, tiny_video_model,
                                                                    video_frames):
    onnx_video = Detector(carried_onnx, keyframe_interval=3, score_threshold=LOW_THRESHOLD)
    torch_video = Detector(carrying_model, keyframe_interval=3, score_threshold=LOW_THRESHOLD)
    plain_video = Detector(tiny_video_model, keyframe_interval=3, score_threshold=LOW_THRESHOLD)
    ours, reference = list(onnx_video.stream(video_frames)), list(torch_video.stream(video_frames))
    assert_same_stream(ours, reference)
    assert set(onnx_video.backend._memory_sources.items()) >= {("key_proto", "proto"), ("key_p4", "key_p4")}
    for detector in (onnx_video, torch_video, plain_video):
        detector.reset()
    for index, frame in enumerate(video_frames[:3]):
        got, want, plain = onnx_video.raw(frame), torch_video.raw(frame), plain_video.raw(frame)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(b).max())
        np.testing.assert_array_equal(want.scores, plain.scores)  # carrying changes the prototypes only
        assert np.array_equal(want.proto, plain.proto) == (index == 0)


def test_a_warped_graph_that_does_not_fit_its_key_frame_is_refused(carried_onnx, video_onnx, tiny_video_model, tmp_path):
    from yolactedge.export.onnx_video import export_video_onnx
    from yolactedge.model.build import with_config
    from yolactedge.runtime.tensors import warped_graph_path

    # The plain pair's key frame with the carried pair's warped frame: they fit (same model), and carry.
    mixed = tmp_path / "mixed.onnx"
    mixed.write_bytes(video_onnx.read_bytes())
    warped_graph_path(mixed).write_bytes(warped_graph_path(carried_onnx).read_bytes())
    Detector(mixed, keyframe_interval=2).raw(np.zeros((64, 64, 3), np.uint8))
    # A warped frame exported at another input size: its memory inputs do not fit this key frame's outputs.
    other = tmp_path / "other.onnx"
    export_video_onnx(with_config(tiny_video_model, carry_protos=True, input_size=96), other, check=False,
                      progress=False)
    warped_graph_path(mixed).write_bytes(warped_graph_path(other).read_bytes())
    with pytest.raises(ModelError, match="does not fit the key frame's .*different exports") as exc:
        Detector(mixed, keyframe_interval=2)
    assert "\n" not in str(exc.value)


def test_memory_sources_map_key_proto_to_proto_and_refuse_other_inputs():
    from yolactedge.runtime.tensors import VIDEO_MEMORY, memory_sources

    assert memory_sources(["input", *VIDEO_MEMORY], "input", "w") == {name: name for name in VIDEO_MEMORY}
    carried = memory_sources(["key_proto:0", "input", *VIDEO_MEMORY], "input", "w")
    assert carried["key_proto:0"] == "proto" and len(carried) == 4
    for inputs in (["input", "key_p4", "key_p5"], ["input", *VIDEO_MEMORY, "key_proto", "extra"],
                   ["image", *VIDEO_MEMORY], ["input", *VIDEO_MEMORY, "key_p4"]):
        with pytest.raises(ModelError, match="not a warped-frame graph's memory") as exc:
            memory_sources(inputs, "input", "w.onnx")
        assert "\n" not in str(exc.value)


# --- LiteRT: the exported TFLite pair (the conversions are in tests/export/test_tflite_video_export.py) --------------

def tagged_copy(source, target, **metadata):
    """A copy of a TFLite file with `metadata` merged into its embedded yolactedge metadata."""
    from yolactedge.export.tflite_file import embed_metadata
    from yolactedge.modelmeta import read_tflite_metadata

    target.write_bytes(embed_metadata(source.read_bytes(), (read_tflite_metadata(source) or {}) | metadata))
    return target


@pytest.mark.filterwarnings("ignore:.*carries no class names")
def test_a_tflite_key_file_without_its_partner_or_with_another_ones_is_refused(tiny_tflite, tmp_path):
    key = tagged_copy(tiny_tflite["fp32"], tmp_path / "vid.tflite", video_graph="key", video_pair="one")
    Detector(key)  # image mode needs no partner
    with pytest.raises(ModelError, match="vid_warp.tflite is missing beside it") as exc:
        Detector(key, keyframe_interval=5)
    assert "\n" not in str(exc.value)
    partner = tagged_copy(tiny_tflite["fp32"], tmp_path / "vid_warp.tflite", video_graph="warped", video_pair="two")
    with pytest.raises(ModelError, match="warped-frame graph of another export .*video_pair"):
        Detector(key, keyframe_interval=5)
    tagged_copy(tiny_tflite["fp32"], partner, video_graph="warped", video_pair="one", input_size=96)
    with pytest.raises(ModelError, match="another export .*input_size 96"):
        Detector(key, keyframe_interval=5)
    tagged_copy(tiny_tflite["fp32"], partner, video_graph="image", video_pair="one")
    with pytest.raises(ModelError, match="not a video model's warped-frame graph"):
        Detector(key, keyframe_interval=5)
    with pytest.raises(ModelError, match=r"graph of a video model; open its key-frame graph \(vid.tflite\)"):
        Detector(tagged_copy(tiny_tflite["fp32"], tmp_path / "vid_warp.tflite", video_graph="warped"))
    with pytest.raises(ModelError, match="an image model; keyframe_interval > 1 needs a video model's TFLite pair"):
        Detector(tiny_tflite["int8"], keyframe_interval=2)
