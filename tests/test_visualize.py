"""draw_detections and class_color: new image, input untouched, masks/boxes/labels where expected, stable colours."""
from __future__ import annotations

import numpy as np
import pytest

from yolactedge.postprocessing import Detections
from yolactedge.visualize import class_color, draw_detections

H, W = 120, 160
NAMES = ["circle", "star", "square"]


def detections(class_ids=(0, 2), scores=(0.9, 0.6)):
    """Two detections: a filled 20×30 block inside box 1 and a 30×30 block inside box 2."""
    masks = np.zeros((2, H, W), bool)
    masks[0, 50:70, 20:50] = True
    masks[1, 40:70, 100:130] = True
    boxes = [[15, 45, 55, 75], [95, 35, 135, 75]]
    return Detections.from_masks(boxes, scores, class_ids, masks)


def gradient_image():
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([x * 255 // W, y * 255 // H, np.full_like(x, 90)], axis=-1).astype(np.uint8)


def test_returns_a_new_image_and_leaves_the_input_alone():
    image = gradient_image()
    before = image.copy()
    out = draw_detections(image, detections(), NAMES)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.shares_memory(out, image)
    np.testing.assert_array_equal(image, before)


def test_masks_are_tinted_towards_the_class_colour_and_the_rest_is_untouched():
    image = np.full((H, W, 3), 128, np.uint8)
    out = draw_detections(image, detections(), NAMES, alpha=0.5, show_boxes=False, show_labels=False)
    for k, (y, x) in enumerate([(60, 35), (55, 115)]):
        expected = (128 + np.array(class_color(detections().class_ids[k]))) / 2
        np.testing.assert_allclose(out[y, x], expected, atol=1)
    outside = ~detections().masks.any(0)
    np.testing.assert_array_equal(out[outside], image[outside])


def test_boxes_and_labels_are_drawn():
    image = np.full((H, W, 3), 128, np.uint8)
    boxes_only = draw_detections(image, detections(), NAMES, show_masks=False, show_labels=False)
    np.testing.assert_array_equal(boxes_only[60, 15], class_color(0))  # left edge of box 1
    np.testing.assert_array_equal(boxes_only[60, 60], image[60, 60])  # between the boxes
    labels_only = draw_detections(image, detections(), NAMES, show_masks=False, show_boxes=False)
    above_box = labels_only[30:45, 15:60]
    assert (above_box != 128).any() and (labels_only[80:, :] == 128).all()


@pytest.mark.parametrize("background", [0, 255])
def test_labels_are_readable_on_dark_and_light_images(background):
    image = np.full((H, W, 3), background, np.uint8)
    out = draw_detections(image, detections(), NAMES, show_masks=False, show_boxes=False)
    label = out[30:45, 15:60].reshape(-1, 3).astype(int)
    colours = {tuple(c) for c in label.tolist()}
    assert tuple(class_color(0)) in colours  # the filled background
    assert len(colours) > 2  # and text on it (antialiased)
    assert np.ptp(label.sum(1)) > 200  # with strong contrast


def test_nothing_to_draw():
    image = gradient_image()
    empty = Detections.from_masks(np.zeros((0, 4)), [], [], np.zeros((0, H, W), bool))
    np.testing.assert_array_equal(draw_detections(image, empty, NAMES), image)
    off = draw_detections(image, detections(), NAMES, show_masks=False, show_boxes=False, show_labels=False)
    np.testing.assert_array_equal(off, image)


def test_colours_depend_on_the_class_only():
    assert class_color(7) == class_color(7) == class_color(7 + 255)
    assert all(isinstance(v, int) and 0 <= v <= 255 for v in class_color(3))
    assert len({class_color(i) for i in range(80)}) == 80
    image = np.full((H, W, 3), 128, np.uint8)
    first = draw_detections(image, detections(scores=(0.9, 0.6)), NAMES, show_boxes=False, show_labels=False)
    swapped = draw_detections(image, detections(scores=(0.6, 0.9)), NAMES, show_boxes=False, show_labels=False)
    np.testing.assert_array_equal(first, swapped)  # disjoint masks: order does not matter, colour does not move


def test_rejects_mismatched_images():
    with pytest.raises(ValueError):
        draw_detections(np.zeros((H, W + 1, 3), np.uint8), detections(), NAMES)
    with pytest.raises(ValueError):
        draw_detections(np.zeros((H, W), np.uint8), detections(), NAMES)
