"""Augmentation: each step keeps image, masks and boxes aligned; the pipeline's outputs follow the contract."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yolactedge.data.augment import (
    EvalTransform,
    TrainAugment,
    expand,
    masks_to_boxes,
    photometric_distort,
    random_mirror,
    random_sample_crop,
    resize,
    resize_masks,
)

FAST = settings(max_examples=40, deadline=None)


@st.composite
def scenes(draw, max_side=80, max_k=5):
    """(image [H,W,3] holding each pixel's (x, y, 7), rectangle masks [k,H,W] uint8, tight boxes, labels)."""
    h, w = draw(st.integers(8, max_side)), draw(st.integers(8, max_side))
    k = draw(st.integers(0, max_k))
    masks = np.zeros((k, h, w), np.uint8)
    for m in masks:
        x1, y1 = draw(st.integers(0, w - 1)), draw(st.integers(0, h - 1))
        x2, y2 = draw(st.integers(x1 + 1, w)), draw(st.integers(y1 + 1, h))
        m[y1:y2, x1:x2] = 1
    labels = np.array(draw(st.lists(st.integers(-1, 3), min_size=k, max_size=k)), np.int64)
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([xx, yy, np.full_like(xx, 7)], -1).astype(np.float32)
    return image, masks, masks_to_boxes(masks), labels


def test_masks_to_boxes():
    masks = np.zeros((3, 10, 12), bool)
    masks[0, 2:5, 3:9] = True
    masks[1, 0, 11] = True
    boxes = masks_to_boxes(masks)
    np.testing.assert_array_equal(boxes, [[3, 2, 9, 5], [11, 0, 12, 1], [0, 0, 0, 0]])
    assert boxes.dtype == np.float32 and masks_to_boxes(masks[:0]).shape == (0, 4)


@FAST
@given(scenes(), st.integers(0, 2**32 - 1))
def test_expand_moves_everything_together(scene, seed):
    image, masks, boxes, _ = scene
    out, out_masks, out_boxes = expand(image, masks, boxes, np.random.default_rng(seed), mean=(1, 2, 3))
    h, w, _ = image.shape
    assert out.shape[0] >= h and out.shape[1] >= w and out.shape[0] <= 4 * h and out.shape[1] <= 4 * w
    np.testing.assert_array_equal(masks_to_boxes(out_masks), out_boxes)
    placed = np.argwhere(out[..., 2] == 7)  # the original image sits intact somewhere; the rest is the mean
    top, left = placed.min(0)
    np.testing.assert_array_equal(out[top:top + h, left:left + w], image)
    np.testing.assert_array_equal(out_masks[:, top:top + h, left:left + w], masks)
    assert (out[..., 2] == 7).sum() == h * w and np.all(out[out[..., 2] != 7] == (1, 2, 3))


@FAST
@given(scenes(), st.integers(0, 2**32 - 1))
def test_crop_keeps_instances_whose_centre_is_inside(scene, seed):
    image, masks, boxes, labels = scene
    out, out_masks, out_boxes, out_labels = random_sample_crop(image, masks, boxes, labels, np.random.default_rng(seed))
    if out.shape == image.shape:
        np.testing.assert_array_equal(out_boxes, boxes)
        return
    assert (labels >= 0).any() and (out_labels >= 0).any()  # a crop always keeps a real instance
    left, top = out[0, 0, :2].astype(int)
    h, w, _ = out.shape
    assert h - 1 <= 2 * (w + 1) and w - 1 <= 2 * (h + 1)  # aspect 1/2..2 before rounding to pixels
    assert h >= int(0.3 * image.shape[0]) - 1 and w >= int(0.3 * image.shape[1]) - 1
    np.testing.assert_array_equal(out, image[top:top + h, left:left + w])
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    keep = np.all((centres > (left, top)) & (centres < (left + w, top + h)), axis=1)
    np.testing.assert_array_equal(out_labels, labels[keep])
    np.testing.assert_array_equal(out_masks, masks[keep][:, top:top + h, left:left + w])
    np.testing.assert_array_equal(masks_to_boxes(out_masks), out_boxes)  # clipped boxes = boxes of cropped masks


def test_crop_leaves_images_without_real_instances_alone():
    image = np.zeros((20, 30, 3), np.float32)
    masks = np.ones((2, 20, 30), np.uint8)
    boxes = masks_to_boxes(masks)
    for labels in (np.array([-1, -1]), np.zeros(0, np.int64)):
        k = len(labels)
        out = random_sample_crop(image, masks[:k], boxes[:k], labels, np.random.default_rng(0))
        assert out[0] is image and len(out[1]) == k


def _crop_areas(enforce_iou):
    image = np.zeros((100, 100, 3), np.float32)
    masks = np.ones((1, 100, 100), np.uint8)
    boxes, labels = masks_to_boxes(masks), np.zeros(1, np.int64)
    rng = np.random.default_rng(0)
    areas = [random_sample_crop(image, masks, boxes, labels, rng, enforce_iou=enforce_iou)[0].shape[:2]
             for _ in range(300)]
    return np.array([h * w / 1e4 for h, w in areas if (h, w) != (100, 100)])


def test_crop_iou_modes_as_original_and_strict():
    # One box covering the image: a crop's IoU with it is the crop's area. The original's test never
    # rejects, so big crops stay rare; SSD's test makes the 0.7 and 0.9 modes produce big crops.
    loose, strict = _crop_areas(False), _crop_areas(True)
    assert (loose >= 0.7).mean() < 0.2
    assert (strict >= 0.7).mean() > 0.3


@FAST
@given(scenes(), st.integers(0, 2**32 - 1))
def test_mirror(scene, seed):
    image, masks, boxes, _ = scene
    out, out_masks, out_boxes = random_mirror(image, masks, boxes, np.random.default_rng(seed))
    flipped = not np.array_equal(out, image)
    if flipped or image.shape[1] == 1:
        np.testing.assert_array_equal(out, image[:, ::-1])
        np.testing.assert_array_equal(out_masks, masks[:, :, ::-1])
    np.testing.assert_array_equal(masks_to_boxes(out_masks), out_boxes)


@FAST
@given(scenes(max_side=120), st.sampled_from([32, 64, 97]))
def test_resize_scales_boxes_with_masks(scene, size):
    image, masks, boxes, _ = scene
    out, out_masks, out_boxes = resize(image, masks, boxes, size)
    assert out.shape == (size, size, 3) and out_masks.shape == (len(masks), size, size)
    assert out_masks.dtype == np.uint8 and set(np.unique(out_masks)) <= {0, 1}
    thick = (out_boxes[:, 2:] - out_boxes[:, :2]).min(1, initial=np.inf) >= 2  # thinner ones may erode away
    assert out_masks[thick].any((1, 2)).all()
    assert np.abs(masks_to_boxes(out_masks)[thick] - out_boxes[thick]).max(initial=0) <= 1.5


def test_resize_masks_beyond_opencv_channel_limit():
    masks = np.zeros((600, 20, 20), np.uint8)
    masks[599, 5:15, 5:15] = 1
    out = resize_masks(masks, 10)
    assert out.shape == (600, 10, 10) and out[:599].sum() == 0
    np.testing.assert_array_equal(masks_to_boxes(out[599:]), [[2, 2, 8, 8]])


def test_photometric_keeps_grey_grey_and_range():
    grey = np.repeat(np.linspace(0, 255, 64 * 48, dtype=np.float32).reshape(64, 48, 1), 3, axis=2)
    for seed in range(20):
        out = photometric_distort(grey, np.random.default_rng(seed))
        assert out.dtype == np.float32 and out.shape == grey.shape
        assert out.min() >= 0 and out.max() <= 255
        np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-2)
        np.testing.assert_allclose(out[..., 0], out[..., 2], atol=1e-2)


def test_photometric_changes_colour():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (32, 32, 3)).astype(np.float32)
    outs = [photometric_distort(image, rng) for _ in range(10)]
    assert sum(not np.allclose(o, image, atol=0.5) for o in outs) >= 7
    assert np.array_equal(image, image.copy())  # input untouched


def _scene(size=120):
    """Two disc instances, labels 0 and 1; instance l is exactly where channel l of the image is bright."""
    yy, xx = np.mgrid[0:size, 0:size]
    masks = np.stack([(xx - 40) ** 2 + (yy - 50) ** 2 < 400, (xx - 85) ** 2 + (yy - 70) ** 2 < 225])
    image = np.zeros((size, size, 3), np.uint8)
    image[..., :2] = masks.transpose(1, 2, 0) * 255
    return image, masks.astype(np.uint8), masks_to_boxes(masks), np.array([0, 1])


def test_geometric_chain_keeps_image_and_masks_aligned():
    checked = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        image, masks, boxes, labels = _scene()
        img = image.astype(np.float32)
        img, masks, boxes = expand(img, masks, boxes, rng)
        img, masks, boxes, labels = random_sample_crop(img, masks, boxes, labels, rng)
        img, masks, boxes = random_mirror(img, masks, boxes, rng)
        img, masks, boxes = resize(img, masks, boxes, 64)
        for mask, label in zip(masks.astype(bool), labels):
            bright = img[..., label] > 190
            if mask.sum() > 20:
                assert (bright & mask).sum() / (bright | mask).sum() > 0.8
                checked += 1
    assert checked > 40


@FAST
@given(scenes(), st.integers(0, 2**32 - 1))
def test_train_augment_contract(scene, seed):
    image, masks, boxes, labels = scene
    image = (image % 256).astype(np.uint8)
    out, out_masks, out_boxes, out_labels = TrainAugment(48, seed=seed)(image, masks.astype(bool), boxes, labels)
    k = len(out_labels)
    assert out.shape == (48, 48, 3) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 255
    assert out_masks.shape == (k, 48, 48) and out_masks.dtype == np.uint8
    assert out_boxes.shape == (k, 4) and out_boxes.dtype == np.float32 and out_labels.dtype == np.int64
    assert k <= len(labels) and set(out_labels.tolist()) <= set(labels.tolist())
    assert np.all((out_boxes >= 0) & (out_boxes <= 1))
    np.testing.assert_array_equal(out_boxes * 48, masks_to_boxes(out_masks))
    assert np.all(out_masks.any((1, 2)))  # vanished instances are dropped


def test_train_augment_is_seeded():
    image, masks, boxes, labels = _scene()
    a = [TrainAugment(64, seed=5)(image, masks, boxes, labels) for _ in range(2)]
    for x, y in zip(*a):
        np.testing.assert_array_equal(x, y)
    aug = TrainAugment(64, seed=5)
    first = aug(image, masks, boxes, labels)
    second = aug(image, masks, boxes, labels)
    aug.reseed(5)
    np.testing.assert_array_equal(aug(image, masks, boxes, labels)[0], first[0])
    outs = [TrainAugment(64, seed=s)(image, masks, boxes, labels)[0] for s in range(6)]
    assert len({o.tobytes() for o in outs + [second[0]]}) > 4


def test_eval_transform_only_resizes():
    image, masks, boxes, labels = _scene()
    out, out_masks, out_boxes, out_labels = EvalTransform(60)(image, masks, boxes, labels)
    np.testing.assert_array_equal(out_labels, labels)
    np.testing.assert_allclose(out_boxes, boxes / 120, atol=1 / 60)
    np.testing.assert_allclose(out, image.reshape(60, 2, 60, 2, 3).mean((1, 3)), atol=1e-3)  # 2x: 2x2 averages
    assert out_masks.shape == (2, 60, 60)


def test_bad_inputs_are_named():
    image, masks, boxes, labels = _scene()
    with pytest.raises(ValueError, match="image must be"):
        EvalTransform(32)(image[..., 0], masks, boxes, labels)
    with pytest.raises(ValueError, match="masks must be"):
        EvalTransform(32)(image, masks[:, :10], boxes, labels)
    with pytest.raises(ValueError, match="2 masks but 1 boxes"):
        TrainAugment(32)(image, masks, boxes[:1], labels)


def test_max_expand_one_keeps_the_canvas_and_bad_values_are_refused():
    from yolactedge.data.augment import TrainAugment, expand

    image = np.full((40, 60, 3), 7, np.uint8)
    masks = np.zeros((1, 40, 60), np.uint8)
    masks[0, 5:15, 10:30] = 1
    boxes = np.array([[10, 5, 30, 15]], np.float32)
    for seed in range(20):
        out, out_masks, out_boxes = expand(image, masks, boxes, np.random.default_rng(seed), max_ratio=1.0)
        assert out.shape == image.shape and out_masks.shape == masks.shape
        np.testing.assert_array_equal(out_boxes, boxes)
    with pytest.raises(ValueError, match="max_expand must be at least 1"):
        TrainAugment(64, max_expand=0.5)
