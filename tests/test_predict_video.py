"""predict on videos and sequences: the pipelined path, tracking output, and every bad input of a stream."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from yolactedge import Detector
from yolactedge.cli import main
from yolactedge.postprocessing.rle import decode
from yolactedge.predict import predict


def write_video(path, frames: int, fps: float = 12.0, size=(64, 48)):
    """An .mp4 (mp4v) or, for .avi, Motion-JPEG: one JPEG per frame, so bytes can be cut or spoiled per frame."""
    codec = "MJPG" if str(path).endswith(".avi") else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, size)
    rng = np.random.default_rng(frames)
    for i in range(frames):
        image = np.full((size[1], size[0], 3), 30, np.uint8)
        cv2.circle(image, (10 + 3 * i, 24), 9, (200, 180, 40), -1)
        writer.write(cv2.add(image, rng.integers(0, 20, image.shape, np.uint8)))
    writer.release()
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, *capsys.readouterr()


def frame_count(path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def test_tracked_video_writes_youtube_vis_results(capsys, tmp_path):
    from yolactedge.data.synthetic_video import render_frames

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (160, 160))
    for image, *_ in render_frames(5, 0, 160, 8):
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    results = tmp_path / "tracks.json"
    code, out, _ = run(capsys, "predict", video, "--model", "demo", "--track", "--save-json", results,
                       "--out", tmp_path / "out")
    assert code == 0 and "8 images" in out
    entries = json.loads(results.read_text())
    assert entries, "the demo model tracks the shapes of a synthetic video"
    assert len({e["video_id"] for e in entries}) == 1 and len({e["track_id"] for e in entries}) == len(entries)
    assert max(sum(s is not None for s in e["segmentations"]) for e in entries) >= 6  # followed most of the clip
    for entry in entries:
        assert len(entry["segmentations"]) == 8 and 0 < entry["score"] <= 1
        seen = [s for s in entry["segmentations"] if s is not None]
        assert seen and all(decode(s).shape == (160, 160) for s in seen)
    assert frame_count(tmp_path / "out" / "clip.mp4") == 8


def test_a_video_that_ends_early_is_processed_and_reported(capsys, tmp_path, tiny_checkpoint):
    data = write_video(tmp_path / "full.avi", 30).read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) * 2 // 3])
    code, out, err = run(capsys, "predict", tmp_path / "cut.avi", "--model", tiny_checkpoint, "--out", tmp_path / "o")
    processed = int(out.strip().splitlines()[-1].split(" images")[0])
    assert code == 1 and 10 < processed < 30 and f"ended after {processed} of 30 frames" in err
    assert frame_count(tmp_path / "o" / "cut.mp4") == processed


def test_a_corrupt_frame_in_the_middle_is_skipped_and_the_rest_processed(capsys, tmp_path, tiny_checkpoint):
    data = bytearray(write_video(tmp_path / "ok.avi", 30).read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]  # JPEG frame starts
    data[starts[15]:starts[15] + 400] = bytes(400)
    (tmp_path / "bad.avi").write_bytes(bytes(data))
    results = tmp_path / "res.json"
    code, out, err = run(capsys, "predict", tmp_path / "bad.avi", "--model", tiny_checkpoint, "--out", tmp_path / "o",
                         "--conf", "0", "--save-json", results)
    assert code == 1 and "29 images" in out and "skipped undecodable frame(s) 15" in err
    names = {r["file_name"] for r in json.loads(results.read_text())}
    assert f"{tmp_path / 'bad.avi'}#16" in names and f"{tmp_path / 'bad.avi'}#15" not in names


def test_zero_length_and_corrupt_videos_are_reported(capsys, tmp_path, tiny_checkpoint):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.mp4").write_bytes(b"\\x00" * 5000)
    code, _, err = run(capsys, "predict", tmp_path / "empty.mp4", tmp_path / "junk.mp4", "--model", tiny_checkpoint,
                       "--out", tmp_path / "o")
    assert code == 1 and "2 inputs could not be read" in err and "Traceback" not in err
    assert not list((tmp_path / "o").glob("*.mp4"))


def test_interrupting_a_stream_keeps_a_playable_video_and_valid_json(tmp_path, tiny_checkpoint):
    video = write_video(tmp_path / "long.mp4", 40)
    seen = []

    def interrupt_after_ten(_image, _prediction):
        seen.append(1)
        if len(seen) == 10:
            raise KeyboardInterrupt

    detector = Detector(str(tiny_checkpoint), score_threshold=0.05)
    with pytest.raises(KeyboardInterrupt):
        predict([video], detector, out_dir=tmp_path / "out", save_json=tmp_path / "res.json", progress=False,
                on_prediction=interrupt_after_ten)
    written = json.loads((tmp_path / "res.json").read_text())
    assert {r["file_name"] for r in written} <= {f"{video}#{i}" for i in range(10)}
    assert 8 <= frame_count(tmp_path / "out" / "long.mp4") <= 10
    assert not list((tmp_path / "out").glob(".*partial*"))


def test_tracked_image_sequence_skips_frames_of_another_size(capsys, tmp_path, tiny_checkpoint):
    folder = tmp_path / "seq"
    folder.mkdir()
    for i in range(4):
        size = (48, 64) if i != 2 else (30, 30)
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((*size, 3), 60 + 20 * i, np.uint8))
    code, out, err = run(capsys, "predict", folder, "--model", tiny_checkpoint, "--track", "--out", tmp_path / "o")
    assert code == 1 and "3 images" in out and "differs from the sequence's first frame" in err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["000.jpg", "001.jpg", "003.jpg"]


def test_stream_flags_that_would_be_ignored_are_refused(capsys, tmp_path, tiny_checkpoint):
    video = write_video(tmp_path / "v.mp4", 3)
    code, _, err = run(capsys, "predict", video, "--model", tiny_checkpoint, "--latest")
    assert code == 2 and "give a camera index" in err
    code, _, err = run(capsys, "predict", video, "--model", tiny_checkpoint, "--track", "--save-json",
                       tmp_path / "r.json", "--annotations", tmp_path / "a.json")
    assert code == 2 and "YouTube-VIS" in err


def test_a_missing_camera_is_a_one_line_error(capsys, tmp_path, tiny_checkpoint):
    code, _, err = run(capsys, "predict", "7", "--model", tiny_checkpoint, "--latest", "--out", tmp_path / "o")
    assert code == 1 and "camera7" in err and "Traceback" not in err


def test_bench_video_reports_both_modes(capsys, tmp_path, tiny_checkpoint):
    video = write_video(tmp_path / "b.mp4", 6)
    rows_file = tmp_path / "rows.json"
    code, out, _ = run(capsys, "bench", "--model", tiny_checkpoint, "--video", video, "--threads", "1",
                       "--conf", "0.05", "--json-out", rows_file)
    assert code == 0 and "sequential" in out and "pipelined" in out
    rows = json.loads(rows_file.read_text())
    assert [r["mode"] for r in rows] == ["sequential", "pipelined"]
    for row in rows:
        assert row["frames"] == 6 and row["fps"] > 0 and row["median_ms"]["inference"] > 0
        assert set(row["busy_s"]) == {"decode", "inference", "postprocess", "draw", "encode"}
    code, _, err = run(capsys, "bench", "--model", tiny_checkpoint, "--video", video, "--threads", "1,2")
    assert code == 2 and "one thread count" in err
    code, _, err = run(capsys, "bench", "--model", tiny_checkpoint, "--video", tmp_path / "none.mp4")
    assert code == 1 and "no such video file" in err


def test_a_camera_that_disappears_mid_stream_ends_cleanly(capsys, tmp_path, tiny_checkpoint, monkeypatch):
    import yolactedge.runtime.images as images_module

    class VanishingCamera:
        """Delivers three frames, then reads fail as when a USB camera is unplugged."""

        def __init__(self, index):
            self.left = 3

        def isOpened(self):  # noqa: N802 (OpenCV's name)
            return True

        def get(self, prop):
            return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

        def read(self):
            self.left -= 1
            return (True, np.full((48, 64, 3), 100, np.uint8)) if self.left >= 0 else (False, None)

        def release(self):
            pass

    real = cv2.VideoCapture
    monkeypatch.setattr(images_module.cv2, "VideoCapture",
                        lambda source: VanishingCamera(source) if isinstance(source, int) else real(source))
    results = tmp_path / "res.json"
    code, out, err = run(capsys, "predict", "0", "--model", tiny_checkpoint, "--latest", "--conf", "0.05",
                         "--out", tmp_path / "o", "--save-json", results)
    assert code == 0 and "Traceback" not in err
    processed = int(out.strip().splitlines()[-1].split(" images")[0])
    assert 1 <= processed <= 3  # --latest may skip a frame that arrived while the model was busy
    assert frame_count(tmp_path / "o" / "camera0.mp4") == processed
    assert {r["file_name"].split("#")[0] for r in json.loads(results.read_text())} <= {"camera0"}


def test_keyframe_interval_runs_video_mode_on_torch_and_the_onnx_pair(capsys, tmp_path, tiny_video_checkpoint):
    video = write_video(tmp_path / "clip.avi", 7)
    seen = []
    predict([video], Detector(tiny_video_checkpoint, keyframe_interval=3), out_dir=None, progress=False,
            on_prediction=lambda image, prediction: seen.append(prediction.frame))
    assert seen == ["key", "warped", "warped", "key", "warped", "warped", "key"]
    pytest.importorskip("onnxruntime")
    assert run(capsys, "export", tiny_video_checkpoint, "--format", "onnx", "--output", tmp_path / "vid.onnx")[0] == 0
    assert (tmp_path / "vid_warp.onnx").is_file()
    code, out, _ = run(capsys, "predict", video, "--model", tmp_path / "vid.onnx", "--keyframe-interval", "3",
                       "--out", tmp_path / "out")
    assert code == 0 and "7 images" in out and frame_count(tmp_path / "out" / "clip.mp4") == 7


def test_keyframe_interval_needs_a_video_model(capsys, tmp_path, tiny_checkpoint):
    video = write_video(tmp_path / "clip.avi", 2)
    for interval, fragment in (("3", "video model"), ("0", "positive integer")):
        code, _, err = run(capsys, "predict", video, "--model", tiny_checkpoint, "--keyframe-interval", interval)
        assert code == 1 and err.startswith("error:") and fragment in err and err.count("\n") == 1
