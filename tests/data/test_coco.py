"""CocoDataset: polygon/RLE/crowd/empty records, category mapping, transforms, and named errors."""
import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from yolactedge.data import CocoDataset, EvalTransform, TrainAugment, collate, load_coco_categories

H, W = 40, 60


def _rect(x1, y1, x2, y2):
    m = np.zeros((H, W), np.uint8)
    m[y1:y2, x1:x2] = 1
    return m


def _uncompressed(mask):
    """COCO's uncompressed RLE: run lengths in column-major order, starting with a run of zeros."""
    flat = mask.T.ravel()
    change = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    return {"size": [H, W], "counts": ([0] if flat[0] else []) + runs}


def _records():
    rle = mask_utils.encode(np.asfortranarray(_rect(30, 5, 50, 25)))
    return {
        "images": [
            {"id": 10, "file_name": "a.png", "width": W, "height": H},
            {"id": 20, "file_name": "b.png", "width": W, "height": H},
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [4, 2, 16, 10], "iscrowd": 0,
             "segmentation": [[4, 2, 20, 2, 20, 12, 4, 12]], "area": 160},
            {"id": 2, "image_id": 10, "category_id": 3, "bbox": [30, 5, 20, 20], "iscrowd": 0,
             "segmentation": {"size": [H, W], "counts": rle["counts"].decode()}, "area": 400},
            {"id": 3, "image_id": 10, "category_id": 11, "bbox": [0, 30, 60, 10], "iscrowd": 1,
             "segmentation": _uncompressed(_rect(0, 30, 60, 40)), "area": 600},
            {"id": 4, "image_id": 10, "category_id": 11, "bbox": [40, 30, 10, 6],
             "segmentation": _uncompressed(_rect(40, 30, 50, 36)), "area": 60},
        ],
        "categories": [{"id": 11, "name": "c"}, {"id": 3, "name": "a"}, {"id": 7, "name": "b"}],
    }


def _write(tmp_path, data=None, images=("a.png", "b.png")):
    for name in images:
        cv2.imwrite(str(tmp_path / name), np.full((H, W, 3), (10, 20, 30), np.uint8))  # BGR on disk
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(_records() if data is None else data))
    return path


def test_categories_map_to_sorted_contiguous_labels(tmp_path):
    path = _write(tmp_path)
    ds = CocoDataset(tmp_path, path)
    assert ds.category_ids == [3, 7, 11] and ds.class_names == ["a", "b", "c"]
    assert load_coco_categories(path) == ([3, 7, 11], ["a", "b", "c"])
    assert len(ds) == 2


def test_polygon_rle_and_crowd_records(tmp_path):
    ds = CocoDataset(tmp_path, _write(tmp_path))
    image, t = ds[0]
    assert image.shape == (3, H, W) and image.dtype == np.float32
    np.testing.assert_array_equal(image[:, 0, 0], [30, 20, 10])  # RGB
    assert t["image_id"] == 10
    np.testing.assert_array_equal(t["labels"], [1, 0, 2])  # categories 7, 3, 11
    assert t["labels"].dtype == np.int64 and t["boxes"].dtype == np.float32 and t["masks"].dtype == np.uint8
    np.testing.assert_array_equal(t["masks"][1], _rect(30, 5, 50, 25))  # compressed RLE
    np.testing.assert_array_equal(t["masks"][2], _rect(40, 30, 50, 36))  # uncompressed RLE
    polygon = t["masks"][0]  # pycocotools rasterises polygon edges inclusively
    assert polygon[3:11, 5:19].all() and polygon.sum() == pytest.approx(160, rel=0.2)
    np.testing.assert_allclose(t["boxes"][0], [4 / W, 2 / H, 20 / W, 12 / H], rtol=1e-6)
    np.testing.assert_allclose(t["crowd_boxes"], [[0, 30 / H, 1, 1]], rtol=1e-6)


def test_image_without_annotations(tmp_path):
    ds = CocoDataset(tmp_path, _write(tmp_path), transform=EvalTransform(32))
    image, t = ds[1]
    assert image.shape == (3, 32, 32)
    assert t["boxes"].shape == (0, 4) and t["labels"].shape == (0,) and t["masks"].shape == (0, 32, 32)
    assert t["crowd_boxes"].shape == (0, 4) and t["image_id"] == 20


def test_annotations_key_is_optional(tmp_path):
    data = _records()
    del data["annotations"]
    _, t = CocoDataset(tmp_path, _write(tmp_path, data))[0]
    assert len(t["labels"]) == 0 and t["masks"].shape == (0, H, W)


def test_transforms_keep_crowds_apart(tmp_path):
    path = _write(tmp_path)
    image, t = CocoDataset(tmp_path, path, transform=EvalTransform(80))[0]
    assert image.shape == (3, 80, 80) and t["masks"].shape == (3, 80, 80)
    np.testing.assert_allclose(t["boxes"][1], [30 / W, 5 / H, 50 / W, 25 / H], atol=1 / 80)
    np.testing.assert_allclose(t["crowd_boxes"], [[0, 30 / H, 1, 1]], atol=1 / 80)
    ds = CocoDataset(tmp_path, path, transform=TrainAugment(48, seed=0))
    for _ in range(10):
        image, t = ds[0]
        assert image.shape == (3, 48, 48)
        assert set(t["labels"].tolist()) <= {0, 1, 2} and len(t["crowd_boxes"]) <= 1
        assert np.all((t["boxes"] >= 0) & (t["boxes"] <= 1)) and len(t["masks"]) == len(t["labels"])


def test_collate(tmp_path):
    ds = CocoDataset(tmp_path, _write(tmp_path), transform=EvalTransform(32))
    images, targets = collate([ds[0], ds[1]])
    assert images.shape == (2, 3, 32, 32) and images.dtype == np.float32
    assert [t["image_id"] for t in targets] == [10, 20]
    with pytest.raises(ValueError, match="cannot stack"):
        collate([ds[0], (np.zeros((3, 16, 16), np.float32), {})])


def _broken(change):
    data = _records()
    change(data)
    return data


BROKEN = [
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "annotation id 1: bbox must have 4 numbers"),
    (lambda d: d["annotations"][1].update(bbox=[1, 2, "x", 4]), "annotation id 2: bbox must have 4 numbers"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, -3, 4]), "annotation id 1: bbox width"),
    (lambda d: d["annotations"][0].update(category_id=99), "annotation id 1: unknown category_id 99"),
    (lambda d: d["annotations"][0].update(image_id=5), "annotation id 1: unknown image_id 5"),
    (lambda d: d["annotations"][0].pop("segmentation"), "annotation id 1: missing 'segmentation'"),
    (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3]]), "annotation id 1: each polygon"),
    (lambda d: d["annotations"][0].update(segmentation=[]), "annotation id 1: segmentation polygon list is empty"),
    (lambda d: d["annotations"][1]["segmentation"].update(size=[10, 10]), "annotation id 2: RLE size"),
    (lambda d: d["annotations"][2]["segmentation"]["counts"].append(5), "annotation id 3: uncompressed RLE"),
    (lambda d: d["annotations"][0].update(iscrowd=2), "annotation id 1: iscrowd"),
    (lambda d: d["annotations"][0].pop("id"), r"annotations\[0\]: missing integer 'id'"),
    (lambda d: d["annotations"][1].update(id=1), r"annotations: duplicate ids \[1\]"),
    (lambda d: d["images"][0].pop("file_name"), "image id 10: missing 'file_name'"),
    (lambda d: d["images"][1].update(width=0), "image id 20: 'width' must be a positive integer"),
    (lambda d: d.pop("images"), "top level: missing 'images' list"),
    (lambda d: d["categories"][0].pop("name"), "category id 11: missing string 'name'"),
    (lambda d: d.update(categories=[]), "categories: need at least one category"),
]


@pytest.mark.parametrize("change, message", BROKEN)
def test_malformed_records_are_named(tmp_path, change, message):
    path = _write(tmp_path, _broken(change))
    with pytest.raises(ValueError, match=f"^annotations.json: {message}"):
        CocoDataset(tmp_path, path)


def test_bad_json_and_missing_files(tmp_path):
    path = tmp_path / "annotations.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="annotations.json: not valid JSON"):
        CocoDataset(tmp_path, path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="top level must be a JSON object"):
        load_coco_categories(path)
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        CocoDataset(tmp_path, tmp_path / "nope.json")
    ds = CocoDataset(tmp_path, _write(tmp_path, images=("a.png",)))
    ds[0]
    with pytest.raises(FileNotFoundError, match=r"b.png \(image id 20\)"):
        ds[1]


def test_image_size_must_match_record(tmp_path):
    data = _records()
    data["images"][1]["width"] = W + 1
    ds = CocoDataset(tmp_path, _write(tmp_path, data))
    with pytest.raises(ValueError, match="image id 20"):
        ds[1]
