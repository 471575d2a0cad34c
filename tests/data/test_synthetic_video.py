"""Synthetic videos: identities persist through motion and occlusion, files are valid YouTube-VIS and deterministic."""
import json

import cv2
import numpy as np
import pytest

from yolactedge.cli import main
from yolactedge.config import DEMO_CLASSES
from yolactedge.data.augment import masks_to_boxes
from yolactedge.data.synthetic import MIN_VISIBLE_FRACTION, visible_shapes
from yolactedge.data.synthetic_video import generate_videos, render_frames, simulate_scene, video_name
from yolactedge.postprocessing import rle

S, T = 96, 6


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = generate_videos(tmp_path_factory.mktemp("videos") / "a", 2, T, seed=3, image_size=S, progress=False)
    return out, json.loads((out / "annotations.json").read_text())


def _visibility(scene, size):
    """[n, T] bool: which tracks data synth's visibility rule keeps in each frame."""
    visible = np.zeros((len(scene.shapes[0]), len(scene.shapes)), bool)
    for t, shapes in enumerate(scene.shapes):
        visible[visible_shapes(shapes, size)[0], t] = True
    return visible


def test_layout_and_categories(dataset):
    out, data = dataset
    assert [v["id"] for v in data["videos"]] == [1, 2]
    for v, video in enumerate(data["videos"]):
        assert video["file_names"] == [f"{video_name(v)}/{t:05d}.jpg" for t in range(T)]
        assert (video["width"], video["height"], video["length"]) == (S, S, T)
        for name in video["file_names"]:
            assert cv2.imread(str(out / "JPEGImages" / name)).shape == (S, S, 3)
    categories = [{"id": j + 1, "name": name, "supercategory": "shape"} for j, name in enumerate(DEMO_CLASSES)]
    assert data["categories"] == categories
    assert [a["id"] for a in data["annotations"]] == list(range(1, len(data["annotations"]) + 1))
    for ann in data["annotations"]:
        assert ann["iscrowd"] == 0 and 1 <= ann["category_id"] <= len(DEMO_CLASSES)
        assert len(ann["segmentations"]) == len(ann["bboxes"]) == len(ann["areas"]) == T
        assert any(seg is not None for seg in ann["segmentations"])


def test_masks_decode_to_boxes_and_areas_and_never_overlap(dataset):
    _, data = dataset
    for video in data["videos"]:
        tracks = [a for a in data["annotations"] if a["video_id"] == video["id"]]
        for t in range(T):
            shown = [a for a in tracks if a["segmentations"][t] is not None]
            assert all(a["bboxes"][t] is None and a["areas"][t] is None for a in tracks if a not in shown)
            masks = np.array([rle.decode(a["segmentations"][t]) for a in shown]).reshape(-1, S, S)
            assert masks.sum(0).max(initial=0) <= 1  # visible parts only
            for ann, mask, (x1, y1, x2, y2) in zip(shown, masks, masks_to_boxes(masks)):
                assert ann["segmentations"][t]["size"] == [S, S]
                assert ann["areas"][t] == mask.sum() > 0
                assert ann["bboxes"][t] == [x1, y1, x2 - x1, y2 - y1]


def test_annotations_are_the_rendered_masks(dataset):
    _, data = dataset
    tracks = [a for a in data["annotations"] if a["video_id"] == 2]
    for t, (image, _, shown, masks, classes) in enumerate(render_frames(3, 1, S, T)):
        assert image.shape == (S, S, 3)
        written = [a for a in tracks if a["segmentations"][t] is not None]
        assert len(written) == len(shown)  # track ids ascend with depth, so both lists are back to front
        for ann, mask, class_id in zip(written, masks, classes):
            np.testing.assert_array_equal(rle.decode(ann["segmentations"][t]), mask)
            assert ann["category_id"] == class_id + 1


def test_identity_follows_the_object():
    """Every visible mask lies inside its own track's shape, and moves a little from frame to frame."""
    size, frames, steps = 160, 20, []
    for video in range(6):
        scene = simulate_scene(0, video, size, frames)
        previous = {}
        for shapes in scene.shapes:
            tracks, _, masks = visible_shapes(shapes, size)
            current = {}
            for j, mask in zip(tracks, masks):
                assert not (mask & ~shapes[j].mask(size)).any()
                ys, xs = np.nonzero(mask)
                current[j] = np.array([xs.mean(), ys.mean()])
                if j in previous:
                    steps.append(np.linalg.norm(current[j] - previous[j]) / size)
            previous = current
    assert len(steps) > 100
    assert max(steps) < 0.15 and np.median(steps) < 0.03


def test_objects_enter_leave_and_come_back_from_behind_others():
    """Within a small search: a track first null then shown, one shown then null, and one that others hide for a
    few frames (the border alone would leave enough of it in view) and that reappears under the same id."""
    size, frames = 160, 20
    found = set()
    for video in range(12):
        scene = simulate_scene(1, video, size, frames)
        for j, shown in enumerate(_visibility(scene, size)):
            seen = np.flatnonzero(shown)
            if not len(seen):
                continue
            found |= {"enter"} if seen[0] > 0 else set()
            found |= {"leave"} if seen[-1] < frames - 1 else set()
            gaps = [t for t in range(seen[0], seen[-1]) if not shown[t]]
            inside = [scene.shapes[t][j].mask(size).sum() >= MIN_VISIBLE_FRACTION * scene.shapes[t][j].area()
                      for t in gaps]
            found |= {"occluded"} if gaps and all(inside) else set()
        if found == {"enter", "leave", "occluded"}:
            return
    pytest.fail(f"only found {sorted(found)} in 12 videos")


def test_camera_and_background_move():
    scene = simulate_scene(0, 0, 160, 30)
    assert len({tuple(c) for c in scene.backdrop_corners}) > 3
    assert (scene.backdrop_corners >= 0).all() and (scene.backdrop_corners + 160 <= scene.backdrop_size).all()


def _files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_files_for_any_workers_and_video_count(tmp_path):
    serial = _files(generate_videos(tmp_path / "serial", 3, 4, seed=5, image_size=S, progress=False))
    pooled = _files(generate_videos(tmp_path / "pooled", 3, 4, seed=5, image_size=S, progress=False, workers=2))
    assert serial == pooled
    fewer = _files(generate_videos(tmp_path / "fewer", 2, 4, seed=5, image_size=S, progress=False))
    jpegs = {k: v for k, v in serial.items() if k.endswith(".jpg") and video_name(2) not in k}
    assert jpegs == {k: v for k, v in fewer.items() if k.endswith(".jpg")}
    first_two = json.loads(serial["annotations.json"])["videos"][:2]
    assert json.loads(fewer["annotations.json"])["videos"] == first_two
    other_seed = _files(generate_videos(tmp_path / "other", 1, 4, seed=6, image_size=S, progress=False))
    assert other_seed[f"JPEGImages/{video_name(0)}/00000.jpg"] != serial[f"JPEGImages/{video_name(0)}/00000.jpg"]


def test_mp4(tmp_path):
    out = generate_videos(tmp_path / "m", 1, 5, seed=0, image_size=S, fps=7.0, mp4=True, progress=False)
    capture = cv2.VideoCapture(str(out / "videos" / f"{video_name(0)}.mp4"))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(7.0)
    frames = []
    while (frame := capture.read()[1]) is not None:
        frames.append(frame)
    assert len(frames) == 5 and frames[0].shape == (S, S, 3)


@pytest.mark.parametrize("options, message", [
    ({"num_videos": -1}, "num_videos"), ({"frames": 0}, "frames"), ({"fps": 0.0}, "fps"),
    ({"workers": -1}, "workers"), ({"image_size": 16}, "image_size"),
])
def test_bad_arguments(tmp_path, options, message):
    arguments = {"num_videos": 1, "frames": 2, "image_size": S, "progress": False}
    with pytest.raises(ValueError, match=message):
        generate_videos(tmp_path / "x", **{**arguments, **options})
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("flag, value, message", [
    ("--videos", "0", "--videos must be at least 1"), ("--frames", "0", "--frames must be at least 1"),
    ("--workers", "-1", "--workers must be at least 0"), ("--fps", "0", "--fps must be a positive number"),
])
def test_cli_errors_are_one_line(capsys, tmp_path, flag, value, message):
    argv = {"--videos": "1", "--frames": "2", "--workers": "0", "--fps": "10", flag: value}
    code = main(["data", "synth-video", "--out", str(tmp_path / "d"), "--imgsz", str(S),
                 *[item for pair in argv.items() for item in pair]])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith(f"error: {message}, got ")


def test_cli_writes_dataset(capsys, tmp_path):
    code = main(["data", "synth-video", "--out", str(tmp_path / "d"), "--videos", "1", "--frames", "3",
                 "--imgsz", str(S), "--mp4", "--fps", "5"])
    assert code == 0 and "wrote 1 videos of 3 frames" in capsys.readouterr().out
    assert (tmp_path / "d" / "videos" / f"{video_name(0)}.mp4").is_file()
    assert len(json.loads((tmp_path / "d" / "annotations.json").read_text())["videos"][0]["file_names"]) == 3
