"""`yolactedge val --video`: per-frame AP equal to `val` on the same frames, tracks scored, bad data reported."""
from __future__ import annotations

import json

import pytest

from yolactedge.cli import main
from yolactedge.data import frames_as_coco, generate_videos, load_ytvis
from yolactedge.fileio import atomic_write_json

pytest.importorskip("pycocotools")
pytest.importorskip("trackeval")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return generate_videos(tmp_path_factory.mktemp("vis") / "data", 2, 6, seed=3, image_size=160, progress=False)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, *capsys.readouterr()


def test_per_frame_ap_equals_val_on_the_frames_as_images(capsys, tmp_path, videos):
    metrics_video, metrics_images = tmp_path / "v.json", tmp_path / "i.json"
    code, out, _ = run(capsys, "val", "--video", "--model", "demo", "--data", videos, "--track",
                       "--metrics-out", metrics_video, "--save-json", tmp_path / "tracks.json")
    assert code == 0 and "2 videos, 12 frames" in out and "HOTA" in out and "video mask AP" in out
    frames = atomic_write_json(tmp_path / "frames.json", frames_as_coco(load_ytvis(videos)))
    assert run(capsys, "val", "--model", "demo", "--images", videos / "JPEGImages", "--annotations", frames,
               "--metrics-out", metrics_images)[0] == 0
    by_video, by_image = json.loads(metrics_video.read_text()), json.loads(metrics_images.read_text())
    for iou_type in ("bbox", "segm"):
        assert by_video["frames"][iou_type] == pytest.approx(by_image[iou_type], abs=1e-12)
    assert 0 < by_video["tracking"]["IDF1"] <= 1 and 0 < by_video["video"]["AP"] <= 1
    tracks = json.loads((tmp_path / "tracks.json").read_text())
    assert tracks and all(len(t["segmentations"]) == 6 for t in tracks)


def test_a_video_with_missing_frames_is_skipped_and_reported(capsys, tmp_path, videos):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(videos, copy)
    first_video = sorted((copy / "JPEGImages").iterdir())[0]
    (first_video / "00003.jpg").unlink()
    code, out, err = run(capsys, "val", "--video", "--model", "demo", "--data", copy)
    assert code == 1 and "1 videos, 6 frames" in out and "1 videos skipped" in err and "00003.jpg" in err


def test_val_video_usage_errors(capsys, tmp_path, videos):
    code, _, err = run(capsys, "val", "--video", "--model", "demo")
    assert code == 2 and "--data DIR" in err
    code, _, err = run(capsys, "val", "--model", "demo", "--data", videos)
    assert code == 2 and "are for --video" in err
    code, _, err = run(capsys, "val", "--model", "demo", "--images", videos, "--annotations", videos / "a.json",
                       "--keyframe-interval", "5")
    assert code == 2 and "are for --video" in err
    code, _, err = run(capsys, "val", "--video", "--model", "demo", "--data", videos, "--track-conf", "3")
    assert code == 2 and "--track-conf" in err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "annotations.json").write_text('{"videos": []}')
    code, _, err = run(capsys, "val", "--video", "--model", "demo", "--data", tmp_path / "bad")
    assert code == 1 and err.startswith("error") and "Traceback" not in err


def test_val_video_with_key_and_warped_frames(capsys, tmp_path, videos, tiny_video_checkpoint):
    code, out, _ = run(capsys, "val", "--video", "--model", tiny_video_checkpoint, "--data", videos,
                       "--keyframe-interval", "3")
    assert code == 0 and "2 videos, 12 frames" in out


def test_a_pair_that_carries_prototypes_runs_through_val_and_bench(capsys, tmp_path, videos, tiny_video_checkpoint,
                                                                     tiny_checkpoint):
    pytest.importorskip("onnxruntime")
    import onnx

    from yolactedge.bench import benchmark

    code, _, err = run(capsys, "export", tiny_video_checkpoint, "--format", "onnx", "--carry-protos", "--output",
                       tmp_path / "vid.onnx")
    assert code == 0, err
    assert [i.name for i in onnx.load(str(tmp_path / "vid_warp.onnx")).graph.input][-1] == "key_proto"
    code, out, _ = run(capsys, "val", "--video", "--model", tmp_path / "vid.onnx", "--data", videos,
                       "--keyframe-interval", "3")
    assert code == 0 and "2 videos, 12 frames" in out
    rows = benchmark([str(tmp_path / "vid.onnx")], threads=[1], runs=2, warmup=1, progress=False)
    assert [r.frame for r in rows] == ["key", "warped"]
    code, _, err = run(capsys, "export", tiny_checkpoint, "--format", "onnx", "--carry-protos", "--output",
                       tmp_path / "image.onnx")
    assert code == 1 and err.startswith("error:") and "needs a video model" in err and err.count("\n") == 1


def test_warped_of_scores_only_the_frames_a_video_model_warps(capsys, tmp_path, videos):
    metrics_video, metrics_images = tmp_path / "v.json", tmp_path / "i.json"
    code, out, _ = run(capsys, "val", "--video", "--model", "demo", "--data", videos, "--warped-of", "3",
                       "--metrics-out", metrics_video)
    assert code == 0 and "2 videos, 8 frames (the warped frames of key-frame interval 3)" in out
    coco = frames_as_coco(load_ytvis(videos))
    kept = {image["id"] for image in coco["images"] if image["frame_index"] % 3 != 0}
    coco = {**coco, "images": [i for i in coco["images"] if i["id"] in kept],
            "annotations": [a for a in coco["annotations"] if a["image_id"] in kept]}
    frames = atomic_write_json(tmp_path / "warped.json", coco)
    assert run(capsys, "val", "--model", "demo", "--images", videos / "JPEGImages", "--annotations", frames,
               "--metrics-out", metrics_images)[0] == 0
    by_video, by_image = json.loads(metrics_video.read_text()), json.loads(metrics_images.read_text())
    for iou_type in ("bbox", "segm"):
        assert by_video["frames"][iou_type] == pytest.approx(by_image[iou_type], abs=1e-12)


def test_warped_of_usage_errors(capsys, videos, tiny_video_checkpoint):
    code, _, err = run(capsys, "val", "--video", "--model", "demo", "--data", videos, "--warped-of", "1")
    assert code == 1 and "at least 2" in err and "Traceback" not in err
    code, _, err = run(capsys, "val", "--video", "--model", tiny_video_checkpoint, "--data", videos,
                       "--keyframe-interval", "2", "--warped-of", "3")
    assert code == 1 and "same interval" in err
    code, _, err = run(capsys, "val", "--model", "demo", "--images", videos, "--annotations", videos / "a.json",
                       "--warped-of", "3")
    assert code == 2 and "are for --video" in err
