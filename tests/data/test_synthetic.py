"""The synthetic benchmark: deterministic, shape-defined classes, visible-only masks, valid COCO output."""
import json
import math

import cv2
import numpy as np
import pytest

from yolactedge.config import DEMO_CLASSES
from yolactedge.data import CocoDataset, Shape, generate_dataset, render_sample, sample_rng
from yolactedge.data.synthetic import MAX_INSTANCES, SIZE_RANGE, sample_shapes

S = 320
CLASS = {name: i for i, name in enumerate(DEMO_CLASSES)}


@pytest.fixture(scope="module")
def samples():
    return [render_sample(sample_rng(7, i), S) for i in range(40)]


def test_same_seed_same_sample():
    a, b = render_sample(sample_rng(3, 5), S), render_sample(sample_rng(3, 5), S)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    other = render_sample(sample_rng(4, 5), S)
    assert not np.array_equal(a[0], other[0])


def test_sample_types_and_counts(samples):
    for image, masks, classes in samples:
        assert image.shape == (S, S, 3) and image.dtype == np.uint8
        assert masks.dtype == bool and masks.shape[1:] == (S, S)
        assert classes.dtype == np.int64 and len(classes) == len(masks)
        assert 1 <= len(masks) <= MAX_INSTANCES
        assert ((classes >= 0) & (classes < len(DEMO_CLASSES))).all()
    assert {int(c) for _, _, cl in samples for c in cl} == set(range(len(DEMO_CLASSES)))
    assert max(len(m) for _, m, _ in samples) >= 8  # crowded scenes do occur


def test_masks_are_visible_only_and_not_tiny(samples):
    for _, masks, _ in samples:
        assert masks.sum(0).max() <= 1  # painted back to front: no pixel belongs to two instances
        assert masks.sum((1, 2)).min() >= 16


def test_some_instances_are_occluded(samples):
    # Masks that touch another instance's mask show occlusion/adjacency happens regardless of class.
    touching = 0
    for _, masks, _ in samples:
        grown = np.stack([cv2.dilate(m.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0 for m in masks])
        touching += int(((grown.sum(0) >= 2) & masks.any(0)).any())
    assert touching >= 10


def test_sizes_in_range():
    rng = np.random.default_rng(0)
    shapes = [s for _ in range(200) for s in sample_shapes(rng, S)]
    sizes = np.array([s.size for s in shapes]) / S
    assert sizes.min() >= SIZE_RANGE[0] and sizes.max() <= SIZE_RANGE[1]
    assert sizes.min() < 0.05 and sizes.max() > 0.5
    for s in shapes[:100]:  # the size is the shape's largest extent, whatever its rotation
        pts = np.concatenate(s.contours())
        assert np.ptp(pts, axis=0).max() <= s.size + 1e-6


def test_visible_boxes_bounded_by_max_size(samples):
    for _, masks, _ in samples:
        for m in masks:
            ys, xs = np.nonzero(m)
            assert max(np.ptp(xs), np.ptp(ys)) <= SIZE_RANGE[1] * S + 2


def _solidity(mask):
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    hull = cv2.convexHull(np.concatenate(contours))
    return mask.sum() / cv2.contourArea(hull)


def _holes(mask):
    n, _ = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
    return n - 2  # minus the outside


def _shape(name, detail=0.0, aspect=1.0, angle=0.3):
    return Shape(CLASS[name], 160.0, 160.0, 200.0, aspect, angle, detail)


@pytest.mark.parametrize("aspect", [1.0, 0.6])
def test_class_geometry(aspect):
    masks = {n: _shape(n, d, aspect).mask(S) for n, d in
             [("circle", 0), ("ring", 0.55), ("triangle", 0.3), ("square", 0), ("star", 0.42), ("cross", 0.3)]}
    for name, m in masks.items():
        assert _holes(m) == (1 if name == "ring" else 0), name
    assert _solidity(masks["circle"]) > 0.97 and _solidity(masks["square"]) > 0.97
    assert _solidity(masks["triangle"]) > 0.97
    assert 0.3 < _solidity(masks["star"]) < 0.7
    assert 0.4 < _solidity(masks["cross"]) < 0.8
    contour = cv2.findContours(masks["triangle"].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0][0]
    assert len(cv2.approxPolyDP(contour, 3.0, True)) == 3
    contour = cv2.findContours(masks["square"].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0][0]
    assert len(cv2.approxPolyDP(contour, 3.0, True)) == 4
    # The circle is an ellipse (pi a b) and the square fills its rotated rectangle.
    half = 100.0
    assert masks["circle"].sum() == pytest.approx(math.pi * half * half * aspect, rel=0.02)
    (_, _), (w, h), _ = cv2.minAreaRect(cv2.findNonZero(masks["square"].astype(np.uint8)))
    assert masks["square"].sum() == pytest.approx(w * h, rel=0.03)


def test_star_has_five_points_and_cross_four_arms():
    def deep_defects(mask):
        contour = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0][0]
        defects = cv2.convexityDefects(contour, cv2.convexHull(contour, returnPoints=False))
        return int((defects[:, 0, 3] / 256 > 10).sum())

    assert deep_defects(_shape("star", 0.4).mask(S)) == 5
    assert deep_defects(_shape("cross", 0.3).mask(S)) == 4


def test_shape_area_matches_pixels():
    for name in DEMO_CLASSES:
        s = _shape(name, {"ring": 0.6, "triangle": -0.4, "star": 0.45, "cross": 0.25}.get(name, 0.0), 0.8)
        assert s.mask(S).sum() == pytest.approx(s.area(), rel=0.05), name  # AA edges: ~half a pixel


def test_colour_does_not_predict_class(samples):
    means = {c: [] for c in range(len(DEMO_CLASSES))}
    for image, masks, classes in samples:
        for m, c in zip(masks, classes):
            means[int(c)].append(image[m].mean(0))
    per_class = np.array([np.mean(v, 0) for v in means.values()])
    assert np.ptp(per_class, axis=0).max() < 60  # same palette for all: class mean colours stay close


def test_other_image_size():
    image, masks, classes = render_sample(sample_rng(0, 0), 550)
    assert image.shape == (550, 550, 3) and masks.shape == (len(classes), 550, 550)


def test_generate_dataset(tmp_path):
    from pycocotools import mask as mask_utils

    out = generate_dataset(tmp_path / "a", 4, seed=11, progress=False)
    assert out == tmp_path / "a"
    data = json.loads((out / "annotations.json").read_text())
    assert [c["id"] for c in data["categories"]] == [1, 2, 3, 4, 5, 6]
    assert [c["name"] for c in data["categories"]] == list(DEMO_CLASSES)
    assert [im["file_name"] for im in data["images"]] == [f"{i:06d}.jpg" for i in range(4)]
    for i, info in enumerate(data["images"]):
        image, masks, classes = render_sample(sample_rng(11, i), S)
        anns = [a for a in data["annotations"] if a["image_id"] == info["id"]]
        assert [a["category_id"] - 1 for a in anns] == classes.tolist()
        for a, m in zip(anns, masks):
            assert isinstance(a["segmentation"]["counts"], str) and a["iscrowd"] == 0
            np.testing.assert_array_equal(mask_utils.decode(a["segmentation"]).astype(bool), m)
            ys, xs = np.nonzero(m)
            assert a["bbox"] == [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1]
            assert a["area"] == m.sum()
        on_disk = cv2.cvtColor(cv2.imread(str(out / "images" / info["file_name"])), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(on_disk, image)
    assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"])


def test_generate_dataset_is_byte_identical(tmp_path):
    a = generate_dataset(tmp_path / "a", 5, seed=5, progress=False)
    b = generate_dataset(tmp_path / "b", 5, seed=5, progress=False, workers=2)
    assert (a / "annotations.json").read_bytes() == (b / "annotations.json").read_bytes()
    for i in range(5):
        name = f"images/{i:06d}.jpg"
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_generated_dataset_loads_with_pycocotools_and_dataset(tmp_path):
    from pycocotools.coco import COCO

    out = generate_dataset(tmp_path, 3, seed=2, progress=False)
    coco = COCO(str(out / "annotations.json"))
    assert len(coco.getImgIds()) == 3 and coco.getCatIds() == [1, 2, 3, 4, 5, 6]
    ds = CocoDataset(out / "images", out / "annotations.json")
    assert ds.class_names == list(DEMO_CLASSES)
    image, target = ds[1]
    _, masks, classes = render_sample(sample_rng(2, 1), S)
    assert image.shape == (3, S, S)
    np.testing.assert_array_equal(target["labels"], classes)
    np.testing.assert_array_equal(target["masks"], masks.astype(np.uint8))


def test_kept_instances_are_mostly_visible():
    from yolactedge.data.synthetic import MIN_VISIBLE_FRACTION, _layout

    rng = np.random.default_rng(1)
    for _ in range(30):
        drawn, masks = _layout(rng, S)
        for (shape, _), m in zip(drawn, masks):
            assert m.sum() >= MIN_VISIBLE_FRACTION * shape.area()
