"""Training augmentation as the original YOLACT trains with (its SSDAugmentation), in NumPy/OpenCV.

Order: photometric distortion, expand, random sample crop, random mirror, resize to a square. Every geometric
step moves image, masks and boxes together; the last step recomputes boxes from the masks so the two can never
disagree, and drops instances that vanished. Images are RGB float32 0..255 (the original works in BGR; only
the colour conversions care, and they are written for RGB here).

Label -1 marks a crowd region: it rides along like any instance but can never be the one object a random crop
keeps, as the original's num_crowds bookkeeping does.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..config import PIXEL_MEAN

DISCARD_SIZE = 4 / 550  # the original's discard_box_width/height: thinner boxes are dropped (fraction of side)
# (min IoU, max IoU) per crop mode; None as a mode keeps the whole image. Same table as the original.
SAMPLE_OPTIONS = (None, (0.1, None), (0.3, None), (0.7, None), (0.9, None), (None, None))


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight pixel boxes [k,4] float32 x1y1x2y2 (x2, y2 exclusive) of masks [k,H,W]; empty masks give zeros."""
    k, h, w = masks.shape
    cols, rows = masks.any(1), masks.any(2)
    boxes = np.stack(
        [cols.argmax(1), rows.argmax(1), w - cols[:, ::-1].argmax(1), h - rows[:, ::-1].argmax(1)], 1
    ).astype(np.float32).reshape(k, 4)
    boxes[~cols.any(1)] = 0
    return boxes


def box_iou(boxes: np.ndarray, rect: np.ndarray) -> np.ndarray:
    """IoU [k] of boxes [k,4] with one box [4], all x1y1x2y2."""
    lt = np.maximum(boxes[:, :2], rect[:2])
    rb = np.minimum(boxes[:, 2:], rect[2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    union = area + np.prod(rect[2:] - rect[:2]) - inter
    return inter / np.maximum(union, 1e-9)


def _random_contrast(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return image * rng.uniform(0.5, 1.5) if rng.integers(2) else image


def photometric_distort(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, then contrast before or after (coin flip) saturation and hue in HSV; [H,W,3] float32 RGB.

    Each change happens with probability 1/2, with the original's ranges. Unlike the original, values are
    clipped to 0..255 (saturation to 0..1) so the output stays a valid image.
    """
    image = image.astype(np.float32, copy=True)
    if rng.integers(2):
        image += rng.uniform(-32.0, 32.0)
    contrast_first = bool(rng.integers(2))
    if contrast_first:
        image = _random_contrast(image, rng)
    hsv = cv2.cvtColor(np.clip(image, 0, 255), cv2.COLOR_RGB2HSV)  # float: H in 0..360, S in 0..1
    if rng.integers(2):
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.5, 1.5), 0, 1)
    if rng.integers(2):
        hsv[..., 0] = np.mod(hsv[..., 0] + rng.uniform(-18.0, 18.0), 360.0)
    image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if not contrast_first:
        image = _random_contrast(image, rng)
    return np.clip(image, 0, 255)


def expand(image, masks, boxes, rng: np.random.Generator, mean=PIXEL_MEAN, max_ratio: float = 4.0):
    """Half the time, put the image at a random spot of a canvas up to max_ratio times larger, filled with mean.

    This is how the original teaches small objects. image [H,W,3], masks [k,H,W], boxes [k,4] pixels.
    """
    if rng.integers(2):
        return image, masks, boxes
    h, w, _ = image.shape
    ratio = rng.uniform(1.0, max_ratio)
    left, top = int(rng.uniform(0, w * ratio - w)), int(rng.uniform(0, h * ratio - h))
    big_h, big_w = int(h * ratio), int(w * ratio)
    fill = tuple(float(m) for m in mean)
    canvas = cv2.copyMakeBorder(image, top, big_h - h - top, left, big_w - w - left, cv2.BORDER_CONSTANT, value=fill)
    big_masks = np.zeros((len(masks), big_h, big_w), masks.dtype)
    big_masks[:, top:top + h, left:left + w] = masks
    return canvas, big_masks, boxes + np.array([left, top, left, top], boxes.dtype)


def _crop_rejected(iou: np.ndarray, mode: tuple, enforce_iou: bool) -> bool:
    """The crop's IoU test. The original's test (kept by default) never rejects, for a reason it documents:

    fixing it to SSD's "some box overlaps at least min_iou" halved its mAP. enforce_iou=True applies SSD's.
    """
    min_iou = -np.inf if mode[0] is None else mode[0]
    max_iou = np.inf if mode[1] is None else mode[1]
    if enforce_iou:
        return bool(iou.max() < min_iou or iou.min() > max_iou)
    return bool(iou.min() < min_iou and max_iou < iou.max())


def _crop(image, masks, boxes, labels, rect: np.ndarray, keep: np.ndarray):
    x1, y1, x2, y2 = rect
    boxes = boxes[keep].copy()
    boxes[:, :2] = np.maximum(boxes[:, :2], rect[:2]) - rect[:2]
    boxes[:, 2:] = np.minimum(boxes[:, 2:], rect[2:]) - rect[:2]
    return image[y1:y2, x1:x2], masks[:, y1:y2, x1:x2][keep], boxes, labels[keep]


def random_sample_crop(image, masks, boxes, labels, rng: np.random.Generator, *, enforce_iou: bool = False):
    """SSD's random crop: pick a mode from SAMPLE_OPTIONS, try 50 crops of 30-100% per side, aspect 1/2..2.

    Instances whose box centre falls inside the crop are kept (their boxes clipped, masks cropped); a crop
    must keep at least one non-crowd instance. Images without one are returned as they are.
    """
    if not (labels >= 0).any():
        return image, masks, boxes, labels
    h, w, _ = image.shape
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    while True:
        mode = SAMPLE_OPTIONS[rng.integers(len(SAMPLE_OPTIONS))]
        if mode is None:
            return image, masks, boxes, labels
        for _ in range(50):
            cw, ch = rng.uniform(0.3 * w, w), rng.uniform(0.3 * h, h)
            if not 0.5 <= ch / cw <= 2.0:
                continue
            left, top = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
            rect = np.array([int(left), int(top), int(left + cw), int(top + ch)])
            if _crop_rejected(box_iou(boxes, rect.astype(np.float32)), mode, enforce_iou):
                continue
            keep = np.all((centres > rect[:2]) & (centres < rect[2:]), axis=1)
            if (keep & (labels >= 0)).any():
                return _crop(image, masks, boxes, labels, rect, keep)


def random_mirror(image, masks, boxes, rng: np.random.Generator):
    """Half the time, flip left-right: image [H,W,3], masks [k,H,W], boxes [k,4] pixels."""
    if not rng.integers(2):
        return image, masks, boxes
    width = image.shape[1]
    boxes = boxes.copy()
    boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    return image[:, ::-1], masks[:, :, ::-1], boxes


def resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """Masks [k,H,W] 0/1 -> uint8 0/1 [k,size,size]: bilinear on 0/255, thresholded at half.

    One mask at a time: stacking them as channels needs a transpose that costs more than the resizing.
    """
    out = np.empty((len(masks), size, size), np.uint8)
    for resized, mask in zip(out, masks):
        resized[...] = cv2.resize(mask * np.uint8(255), (size, size), interpolation=cv2.INTER_LINEAR) >= 128
    return out


def resize(image, masks, boxes, size: int):
    """Squash to size x size without keeping the aspect ratio, as the original (preserve_aspect_ratio False)."""
    h, w, _ = image.shape
    image = cv2.resize(np.ascontiguousarray(image), (size, size), interpolation=cv2.INTER_LINEAR)
    boxes = boxes * np.array([size / w, size / h, size / w, size / h], np.float32)
    return image, resize_masks(masks, size), boxes


def _finish(image, masks, labels, size: int):
    """Boxes from the final masks (normalised x1y1x2y2); instances that vanished or got too thin are dropped."""
    boxes = masks_to_boxes(masks) / np.float32(size)
    keep = (boxes[:, 2] - boxes[:, 0] > DISCARD_SIZE) & (boxes[:, 3] - boxes[:, 1] > DISCARD_SIZE)
    return image.astype(np.float32, copy=False), masks[keep], boxes[keep], labels[keep]


def _check(image, masks, boxes, labels):
    """Validate shapes and bring inputs to image float32, masks uint8 0/1, boxes float32, labels int64."""
    image, masks = np.asarray(image), np.asarray(masks)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be [H,W,3], got shape {image.shape}")
    k = len(masks)
    if masks.shape != (k, *image.shape[:2]):
        raise ValueError(f"masks must be [k,H,W] matching image {image.shape[:2]}, got {masks.shape}")
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    if len(boxes) != k or len(labels) != k:
        raise ValueError(f"{k} masks but {len(boxes)} boxes and {len(labels)} labels")
    return image.astype(np.float32), (masks > 0).astype(np.uint8), boxes, labels


class TrainAugment:
    """The original's training augmentation for input_size x input_size inputs.

    __call__(image [H,W,3] uint8 RGB, masks [k,H,W], boxes [k,4] pixel x1y1x2y2, labels [k]) returns
    (image [S,S,3] float32 0..255 RGB, masks [k',S,S] uint8, boxes [k',4] float32 normalised, labels [k']).
    max_expand 4 is the original's; a short schedule learns faster with less (1 switches expand off).
    """

    def __init__(self, input_size: int, seed: int | None = None, *, mean=PIXEL_MEAN, enforce_crop_iou: bool = False,
                 max_expand: float = 4.0):
        if max_expand < 1:
            raise ValueError(f"max_expand must be at least 1 (1 disables expand), got {max_expand}")
        self.input_size = int(input_size)
        self.max_expand = float(max_expand)
        self.mean = tuple(float(m) for m in mean)
        self.enforce_crop_iou = enforce_crop_iou
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int) -> None:
        """Restart the random stream: data-loader workers need distinct streams (call from worker_init_fn)."""
        self.rng = np.random.default_rng(seed)

    def __call__(self, image, masks, boxes, labels):
        image, masks, boxes, labels = _check(image, masks, boxes, labels)
        image = photometric_distort(image, self.rng)
        image, masks, boxes = expand(image, masks, boxes, self.rng, self.mean, self.max_expand)
        image, masks, boxes, labels = random_sample_crop(
            image, masks, boxes, labels, self.rng, enforce_iou=self.enforce_crop_iou
        )
        image, masks, boxes = random_mirror(image, masks, boxes, self.rng)
        image, masks, _ = resize(image, masks, boxes, self.input_size)
        return _finish(image, masks, labels, self.input_size)


class EvalTransform:
    """Resize only, with TrainAugment's input and output conventions."""

    def __init__(self, input_size: int):
        self.input_size = int(input_size)

    def __call__(self, image, masks, boxes, labels):
        image, masks, boxes, labels = _check(image, masks, boxes, labels)
        image, masks, _ = resize(image, masks, boxes, self.input_size)
        return _finish(image, masks, labels, self.input_size)
