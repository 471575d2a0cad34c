"""YouTube-VIS files: a bad file fails in one line naming the record; frames flatten to a COCO image dataset."""
import copy
import json

import numpy as np
import pytest

from yolactedge.data import CocoDataset
from yolactedge.data.synthetic_video import generate_videos
from yolactedge.data.ytvis import frames_as_coco, load_ytvis, write_ytvis
from yolactedge.fileio import atomic_write_json
from yolactedge.postprocessing import rle

H, W = 6, 8


def _square(x, y, side=2):
    mask = np.zeros((H, W), bool)
    mask[y:y + side, x:x + side] = True
    return rle.encode(mask)


def _valid():
    """Two videos of 3 and 2 frames; track 1 leaves after frame 1, track 2 is shown in both frames."""
    return {
        "videos": [
            {"id": 1, "file_names": ["a/00000.jpg", "a/00001.jpg", "a/00002.jpg"], "width": W, "height": H,
             "length": 3},
            {"id": 2, "file_names": ["b/00000.jpg", "b/00001.jpg"], "width": W, "height": H, "length": 2},
        ],
        "annotations": [
            {"id": 1, "video_id": 1, "category_id": 2, "iscrowd": 0,
             "segmentations": [_square(0, 0), _square(1, 1), None], "bboxes": [[0, 0, 2, 2], [1, 1, 2, 2], None],
             "areas": [4, 4, None]},
            {"id": 2, "video_id": 2, "category_id": 1, "iscrowd": 0, "segmentations": [_square(4, 2), _square(5, 3)],
             "bboxes": [[4, 2, 2, 2], [5, 3, 2, 2]], "areas": [4, 4]},
        ],
        "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "ring"}],
    }


@pytest.fixture
def folder(tmp_path):
    write_ytvis(tmp_path / "annotations.json", _valid())
    for video in _valid()["videos"]:
        for name in video["file_names"]:
            (tmp_path / "JPEGImages" / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "JPEGImages" / name).write_bytes(b"")
    return tmp_path


def test_load(folder):
    data = load_ytvis(folder)
    assert data == load_ytvis(folder / "annotations.json")
    assert [v.length for v in data.videos] == [3, 2] and [c["name"] for c in data.categories] == ["circle", "ring"]
    first = data.videos[0]
    assert data.frame_paths(first) == [folder / "JPEGImages" / f"a/0000{t}.jpg" for t in range(3)]
    assert [t.id for t in data.tracks_of(first)] == [1] and data.tracks_of(first)[0].areas == [4, 4, None]
    assert data.missing_frames() == []
    assert load_ytvis(folder, frames_dir=folder / "elsewhere").missing_frames()[0] == folder / "elsewhere/a/00000.jpg"


def test_missing_frames_are_listed(folder):
    (folder / "JPEGImages/a/00001.jpg").unlink()
    (folder / "JPEGImages/b/00000.jpg").unlink()
    assert load_ytvis(folder).missing_frames() == [folder / "JPEGImages/a/00001.jpg", folder / "JPEGImages/b/00000.jpg"]


def _break(edit):
    data = copy.deepcopy(_valid())
    edit(data)
    return data


BAD_FILES = {
    "no videos": (lambda d: d.pop("videos"), "top level: missing 'videos' list"),
    "no categories": (lambda d: d.pop("categories"), "top level: missing 'categories' list"),
    "no segmentations": (lambda d: d["annotations"][0].pop("segmentations"),
                         "annotation id 1: missing 'segmentations'"),
    "no bboxes": (lambda d: d["annotations"][1].pop("bboxes"), "annotation id 2: missing 'bboxes'"),
    "short segmentations": (lambda d: d["annotations"][0]["segmentations"].pop(),
                            "annotation id 1: 'segmentations' must list one entry per frame: video 1 has 3 frames"),
    "long areas": (lambda d: d["annotations"][1]["areas"].append(4),
                   "annotation id 2: 'areas' must list one entry per frame: video 2 has 2 frames"),
    "missing video": (lambda d: d["annotations"][1].update(video_id=9), "annotation id 2: unknown video_id 9"),
    "unknown category": (lambda d: d["annotations"][0].update(category_id=7), "annotation id 1: unknown category_id 7"),
    "wrong length": (lambda d: d["videos"][1].update(length=3), "video id 2: 'length' is 3 but 'file_names' has 2"),
    "no file names": (lambda d: d["videos"][0].pop("file_names"), "video id 1: 'file_names' must be a non-empty list"),
    "bad width": (lambda d: d["videos"][0].update(width=0), "video id 1: 'width' must be a positive integer"),
    "duplicate video": (lambda d: d["videos"][1].update(id=1), "videos: duplicate ids [1]"),
    "RLE size": (lambda d: d["annotations"][1]["segmentations"][0].update(size=[H, W + 1]),
                 "annotation id 2: frame 0: segmentation must be an RLE {size: [6, 8], counts}"),
    "RLE counts sum": (lambda d: d["annotations"][1]["segmentations"].__setitem__(0, {"size": [H, W],
                                                                                     "counts": [40, 4, 3]}),
                       "annotation id 2: frame 0: an uncompressed RLE's counts must be non-negative integers summing "
                       "to 48 (height x width)"),
    "RLE negative count": (lambda d: d["annotations"][1]["segmentations"].__setitem__(0, {"size": [H, W],
                                                                                         "counts": [50, -2]}),
                           "annotation id 2: frame 0: an uncompressed RLE's counts must be non-negative"),
    "null box only": (lambda d: d["annotations"][1]["bboxes"].__setitem__(1, None),
                      "annotation id 2: frame 1: segmentation, bbox and area must be all null or all given"),
    "short box": (lambda d: d["annotations"][0]["bboxes"][0].pop(), "annotation id 1: frame 0: bbox must be 4 numbers"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_files_fail_in_one_line(tmp_path, name):
    edit, message = BAD_FILES[name]
    path = write_ytvis(tmp_path / "bad.json", _break(edit))
    with pytest.raises(ValueError) as info:
        load_ytvis(path)
    assert str(info.value).startswith(f"bad.json: {message}") and "\n" not in str(info.value)


def test_not_json(tmp_path):
    (tmp_path / "annotations.json").write_text("{")
    with pytest.raises(ValueError, match="annotations.json: not valid JSON"):
        load_ytvis(tmp_path)
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        load_ytvis(tmp_path / "none.json")


def test_write_is_atomic_and_round_trips(tmp_path):
    path = write_ytvis(tmp_path / "sub" / "annotations.json", _valid())
    assert json.loads(path.read_text()) == _valid()
    assert [p.name for p in path.parent.iterdir()] == ["annotations.json"]  # no temporary file left behind


def test_frames_as_coco(folder):
    coco = frames_as_coco(load_ytvis(folder))
    assert [(im["id"], im["file_name"], im["video_id"], im["frame_index"]) for im in coco["images"]] == [
        (1, "a/00000.jpg", 1, 0), (2, "a/00001.jpg", 1, 1), (3, "a/00002.jpg", 1, 2),
        (4, "b/00000.jpg", 2, 0), (5, "b/00001.jpg", 2, 1)]
    assert [(a["id"], a["image_id"], a["track_id"], a["category_id"]) for a in coco["annotations"]] == [
        (1, 1, 1, 2), (2, 2, 1, 2), (3, 4, 2, 1), (4, 5, 2, 1)]
    assert coco["annotations"][3]["bbox"] == [5, 3, 2, 2] and coco["annotations"][3]["area"] == 4
    assert coco["categories"] == _valid()["categories"]


def test_frames_as_coco_loads_in_pycocotools_and_coco_dataset(tmp_path):
    mask_utils = pytest.importorskip("pycocotools.mask")
    from pycocotools.coco import COCO

    out = generate_videos(tmp_path / "v", 2, 3, seed=4, image_size=64, progress=False)
    dataset = load_ytvis(out)
    shown = sum(seg is not None for track in dataset.tracks for seg in track.segmentations)
    path = atomic_write_json(tmp_path / "frames.json", frames_as_coco(dataset))
    coco = COCO(str(path))
    assert len(coco.getImgIds()) == 6 and len(coco.getAnnIds()) == shown > 0
    for ann in coco.loadAnns(coco.getAnnIds()):
        encoded = {**ann["segmentation"], "counts": ann["segmentation"]["counts"].encode()}
        np.testing.assert_array_equal(mask_utils.decode(encoded), rle.decode(ann["segmentation"]))
    image, target = CocoDataset(out / "JPEGImages", path)[0]
    assert image.shape == (3, 64, 64) and len(target["labels"]) == len(coco.getAnnIds(imgIds=[1]))
