"""Synthetic shapes: a small instance-segmentation benchmark that trains on a CPU and is still a real test.

Six classes (config.DEMO_CLASSES) are told apart by outline alone: every instance draws its colour from the
same palette, so a model cannot cheat on colour. Instances overlap and are painted back to front; each mask
holds only what is visible, and heavily hidden instances are never painted, so every visible object is
labelled. Backgrounds carry gradients, texture and clutter (lines, curves, outlines, blobs, noise) that is
never a filled class shape; a camera step adds uneven lighting, blur, sensor noise and JPEG artefacts.

Image i of a dataset comes from `sample_rng(seed, i)`, so it does not depend on how many images are made.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..config import DEMO_CLASSES
from .augment import masks_to_boxes

SIZE_RANGE = (0.04, 0.60)      # largest extent of an object, as a fraction of the image side
MAX_INSTANCES = 12
MIN_VISIBLE_FRACTION = 0.3     # an instance hidden more than this (by others or the border) is not painted
MIN_CONTRAST = 80.0            # RGB distance an object's colour keeps from what lies behind it
MAX_BLOB_SOLIDITY = 0.85       # clutter blobs rounder than this (area / convex hull) are not drawn
_CIRCLE_VERTICES = 64
_SHIFT = 4                     # OpenCV fixed-point bits: sub-pixel vertex positions
_LOW = 40                      # resolution of smooth fields (gradients, mottling, lighting), upscaled linearly


def _unit_circle() -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, _CIRCLE_VERTICES, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], 1)


def _star(detail: float) -> list[np.ndarray]:
    t = np.pi / 2 + np.arange(10) * np.pi / 5
    r = np.where(np.arange(10) % 2 == 1, detail, 1.0)
    return [np.stack([r * np.cos(t), r * np.sin(t)], 1)]


def _cross(w: float) -> list[np.ndarray]:
    turns = [np.array([[w, 1.0], [w, w], [1.0, w]])]
    for _ in range(3):
        turns.append(turns[-1][:, ::-1] * (1, -1))  # (x, y) -> (y, -x): the next arm, clockwise
    return [np.concatenate(turns)]


# Each class's outline in unit coordinates; `detail` is its one free proportion (sampled in _DETAIL_RANGE).
_UNIT_SHAPES = {
    "circle": lambda _: [_unit_circle()],
    "ring": lambda inner: [_unit_circle(), _unit_circle() * inner],  # second contour: the hole
    "triangle": lambda apex: [np.array([[apex, 1.0], [-1.0, -1.0], [1.0, -1.0]])],
    "square": lambda _: [np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])],
    "star": _star,
    "cross": _cross,
}
_DETAIL_RANGE = {
    "circle": (0.0, 0.0),
    "ring": (0.45, 0.7),        # inner / outer radius: a clear hole, never a thin outline
    "triangle": (-0.6, 0.6),    # apex offset along the base: scalene triangles too
    "square": (0.0, 0.0),
    "star": (0.38, 0.5),        # inner / outer radius of the 5 points
    "cross": (0.22, 0.38),      # arm half-width / arm half-length
}


def _polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


@dataclass(frozen=True)
class Shape:
    """One object before painting: class, centre (pixels), size (largest extent, pixels), aspect, angle."""

    class_id: int
    cx: float
    cy: float
    size: float
    aspect: float = 1.0   # minor / major axis scale, applied before rotation
    angle: float = 0.0    # radians
    detail: float = 0.0   # the class's free proportion, see _DETAIL_RANGE

    def contours(self) -> list[np.ndarray]:
        """Polygons [n,2] (x, y pixels); contours after the first are holes."""
        unit = _UNIT_SHAPES[DEMO_CLASSES[self.class_id]](self.detail)
        radius = max(float(np.linalg.norm(c, axis=1).max()) for c in unit)  # farthest point at size / 2
        scale = np.array([1.0, self.aspect]) * self.size / (2.0 * radius)
        c, s = math.cos(self.angle), math.sin(self.angle)
        rot = np.array([[c, -s], [s, c]])
        return [(pts * scale) @ rot.T + (self.cx, self.cy) for pts in unit]

    def area(self) -> float:
        """Area in pixels² of the whole shape, including any part outside the image."""
        outer, *holes = self.contours()
        return _polygon_area(outer) - sum(_polygon_area(h) for h in holes)

    def coverage(self, image_size: int) -> tuple[np.ndarray, tuple[slice, slice]] | None:
        """Anti-aliased coverage (uint8 0..255) over the shape's box clipped to the image, and that box.

        None when the shape lies wholly outside the image. Coverage >= 128 is the shape's binary mask.
        """
        contours = self.contours()
        pts = np.concatenate(contours)
        x0, y0 = np.clip(np.floor(pts.min(0)).astype(int), 0, image_size)
        x1, y1 = np.clip(np.ceil(pts.max(0)).astype(int) + 1, 0, image_size)
        if x1 <= x0 or y1 <= y0:
            return None
        canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
        fixed = [np.round((c - (x0, y0)) * (1 << _SHIFT)).astype(np.int32) for c in contours]
        cv2.fillPoly(canvas, fixed, 255, cv2.LINE_AA, _SHIFT)
        return canvas, (slice(y0, y1), slice(x0, x1))

    def mask(self, image_size: int) -> np.ndarray:
        """Binary mask [S,S] bool of the whole (unoccluded) shape."""
        out = np.zeros((image_size, image_size), bool)
        drawn = self.coverage(image_size)
        if drawn is not None:
            out[drawn[1]] = drawn[0] >= 128
        return out


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator that makes image `index` of the dataset with `seed`."""
    return np.random.default_rng([seed, index])


def sample_shapes(rng: np.random.Generator, image_size: int) -> list[Shape]:
    """1..12 random shapes, back to front; sizes log-uniform so small objects are common."""
    n = int(rng.integers(1, MAX_INSTANCES + 1))
    classes = rng.integers(0, len(DEMO_CLASSES), n)
    sizes = image_size * np.exp(rng.uniform(*np.log(SIZE_RANGE), n))
    aspects = rng.uniform(0.6, 1.0, n)
    angles = rng.uniform(0.0, 2.0 * np.pi, n)
    centres = rng.uniform(0.0, image_size, (n, 2))
    lo, hi = np.array([_DETAIL_RANGE[name] for name in DEMO_CLASSES]).T
    details = rng.uniform(lo[classes], hi[classes])
    return [
        Shape(int(c), float(x), float(y), float(s), float(a), float(t), float(d))
        for c, (x, y), s, a, t, d in zip(classes, centres, sizes, aspects, angles, details)
    ]


def _owner_masks(owner: np.ndarray, k: int) -> np.ndarray:
    return owner[None] == np.arange(k)[:, None, None]


def _min_area(image_size: int) -> float:
    return max(16.0, (0.02 * image_size) ** 2)


def _owner_of(drawn: list, image_size: int) -> np.ndarray:
    """[S,S] int: index of the front-most drawn shape covering each pixel, -1 where none does."""
    owner = np.full((image_size, image_size), -1, np.int64)
    for i, (_, (cov, box)) in enumerate(drawn):
        owner[box][cov >= 128] = i
    return owner


def visible_shapes(shapes: list[Shape], image_size: int) -> tuple[list[int], list, np.ndarray]:
    """The shapes (back to front) that are painted and labelled: at least MIN_VISIBLE_FRACTION and _min_area shown.

    Returns their indices into `shapes`, their (shape, (coverage, box)) pairs and visible masks [k,S,S] bool.
    Dropping hidden shapes only uncovers the rest, so the survivors still pass.
    """
    drawn = [(i, s, s.coverage(image_size)) for i, s in enumerate(shapes)]
    drawn = [(i, s, c) for i, s, c in drawn if c is not None]
    owner = _owner_of([(s, c) for _, s, c in drawn], image_size)
    area = np.bincount(owner.ravel() + 1, minlength=len(drawn) + 1)[1:]
    whole = np.array([s.area() for _, s, _ in drawn])
    keep = (area >= MIN_VISIBLE_FRACTION * whole) & (area >= _min_area(image_size))
    kept = [(s, c) for (_, s, c), k in zip(drawn, keep) if k]
    indices = [i for (i, _, _), k in zip(drawn, keep) if k]
    return indices, kept, _owner_masks(_owner_of(kept, image_size), len(kept))


def _layout(rng: np.random.Generator, image_size: int):
    """Shapes that stay visible enough (back to front), with coverages and visible masks [k,S,S] bool."""
    while True:
        indices, drawn, masks = visible_shapes(sample_shapes(rng, image_size), image_size)
        if indices:
            return drawn, masks


def _ramp(rng: np.random.Generator, size: int) -> np.ndarray:
    """[S,S] float32 linear ramp in about [-0.7, 0.7] along a random direction."""
    t = rng.uniform(0.0, 2.0 * np.pi)
    x = (np.arange(size, dtype=np.float32) - size / 2) / size
    return x[None, :] * np.float32(math.cos(t)) + x[:, None] * np.float32(math.sin(t))


def _smooth_noise(rng: np.random.Generator, size: int, grid: int, channels: int) -> np.ndarray:
    """[S,S,channels] float32 noise of about unit scale varying over about size / grid pixels."""
    coarse = rng.standard_normal((grid, grid, channels), dtype=np.float32)
    mid = min(size, 8 * grid)  # cubic to a small grid, then linear: OpenCV's big cubic upscales are slow
    smooth = cv2.resize(coarse, (mid, mid), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(smooth, (size, size), interpolation=cv2.INTER_LINEAR).reshape(size, size, channels)


def grain(rng: np.random.Generator, shape: tuple, sigma: float) -> np.ndarray:
    """Zero-mean float32 noise of standard deviation sigma (uniform: several times faster than normal)."""
    return (rng.random(shape, dtype=np.float32) - np.float32(0.5)) * np.float32(sigma * 12 ** 0.5)


def _rgb(gray: np.ndarray) -> np.ndarray:
    """[H,W] float32 -> [H,W,3] copies; NumPy's broadcast over a trailing axis of 3 is several times slower."""
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """[S,S,3] float32: a two-colour gradient, colour mottling, and one texture (grain, stripes or blotches)."""
    c0, c1 = rng.uniform(0.0, 255.0, (2, 3)).astype(np.float32)
    low = (c0 + c1) / 2 + _ramp(rng, _LOW)[..., None] * (c1 - c0)
    low += _smooth_noise(rng, _LOW, int(rng.integers(2, 7)), 3) * np.float32(rng.uniform(0.0, 35.0))
    bg = cv2.resize(low, (size, size), interpolation=cv2.INTER_LINEAR)
    texture = rng.integers(3)
    if texture == 0:
        tex = grain(rng, (size, size), rng.uniform(2.0, 14.0))
    elif texture == 1:
        period = rng.uniform(4.0, 24.0) / size
        tex = np.sin(np.float32(2 * np.pi / period) * _ramp(rng, size)) * np.float32(rng.uniform(6.0, 25.0))
    else:
        tex = _smooth_noise(rng, size, max(4, size // 6), 1)[..., 0] * np.float32(rng.uniform(8.0, 25.0))
    return bg + _rgb(tex)


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(points * (1 << _SHIFT)).astype(np.int32)


def _strokes(rng: np.random.Generator, img: np.ndarray) -> None:
    """Thin lines, wandering curves and irregular polygon outlines: edges that belong to no object."""
    size = img.shape[0]
    colour = lambda: tuple(float(v) for v in rng.uniform(0.0, 255.0, 3))  # noqa: E731
    for _ in range(rng.integers(0, 9)):
        p = _fixed(rng.uniform(-0.1 * size, 1.1 * size, 4))
        cv2.line(img, tuple(p[:2]), tuple(p[2:]), colour(), int(rng.integers(1, 4)), cv2.LINE_AA, _SHIFT)
    for _ in range(rng.integers(0, 4)):
        n = int(rng.integers(5, 20))
        heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0.0, 0.6, n))
        steps = rng.uniform(0.03, 0.08) * size * np.stack([np.cos(heading), np.sin(heading)], 1)
        pts = rng.uniform(0.0, size, 2) + np.cumsum(steps, 0)
        cv2.polylines(img, [_fixed(pts)], False, colour(), int(rng.integers(1, 3)), cv2.LINE_AA, _SHIFT)
    for _ in range(rng.integers(0, 3)):
        n = int(rng.integers(5, 10))
        t = np.sort(rng.uniform(0, 2 * np.pi, n))
        r = rng.uniform(0.03, 0.15) * size * rng.uniform(0.5, 1.0, n)
        pts = rng.uniform(0.0, size, 2) + np.stack([r * np.cos(t), r * np.sin(t)], 1)
        cv2.polylines(img, [_fixed(pts)], True, colour(), int(rng.integers(1, 3)), cv2.LINE_AA, _SHIFT)


def _blob_alpha(rng: np.random.Generator, b: int) -> np.ndarray | None:
    """[b,b,1] float32 opacity of an irregular blob; None when it came out convex enough to pass for a shape."""
    yy, xx = np.mgrid[0:b, 0:b].astype(np.float32)
    radial = ((xx - b / 2) ** 2 + (yy - b / 2) ** 2) / (b / 2) ** 2
    wobble = cv2.resize(rng.standard_normal((4, 4), dtype=np.float32), (b, b), interpolation=cv2.INTER_CUBIC)
    inside = (1.5 * wobble + 1.2 - 2.5 * radial > 0).astype(np.uint8)
    contours, _ = cv2.findContours(inside, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull_area = sum(cv2.contourArea(cv2.convexHull(c)) for c in contours)
    if inside.sum() > MAX_BLOB_SOLIDITY * hull_area:
        return None
    return cv2.GaussianBlur(inside.astype(np.float32), (0, 0), 1.0)[..., None] * np.float32(rng.uniform(0.3, 0.8))


def _blobs_and_noise(rng: np.random.Generator, img: np.ndarray) -> None:
    """Translucent irregular blobs and patches of strong noise, in place on float32 [S,S,3]."""
    size = img.shape[0]
    for _ in range(rng.integers(0, 5)):
        b = max(8, int(rng.uniform(0.05, 0.2) * size))
        alpha = _blob_alpha(rng, b)
        y, x = rng.integers(0, size - b + 1, 2)
        colour = rng.uniform(0.0, 255.0, 3).astype(np.float32)
        if alpha is not None:
            patch = img[y:y + b, x:x + b]
            patch += (colour - patch) * alpha
    for _ in range(rng.integers(0, 3)):
        p = max(4, int(rng.uniform(0.05, 0.3) * size))
        yy, xx = np.mgrid[0:p, 0:p].astype(np.float32)
        envelope = np.exp(-(((xx - p / 2) ** 2 + (yy - p / 2) ** 2) / (p / 4) ** 2))[..., None]
        y, x = rng.integers(0, size - p + 1, 2)
        img[y:y + p, x:x + p] += grain(rng, (p, p, 3), rng.uniform(20.0, 50.0)) * envelope


def contrasting_colour(rng: np.random.Generator, behind: np.ndarray) -> np.ndarray:
    """An RGB colour from the shared palette (any hue, saturation, brightness) that stands out from `behind`."""
    hsv = np.stack([rng.uniform(0, 180, 8), rng.uniform(0, 255, 8), rng.uniform(40, 255, 8)], 1)
    rgb = cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0].astype(np.float32)
    dist = np.linalg.norm(rgb - behind, axis=1)
    return rgb[int(np.argmax(dist >= MIN_CONTRAST))] if (dist >= MIN_CONTRAST).any() else rgb[int(dist.argmax())]


def _paint(rng: np.random.Generator, canvas: np.ndarray, coverage: np.ndarray, box: tuple[slice, slice]) -> None:
    """Composite one object in a colour that stands out from what lies behind it, in place."""
    paint_object(rng, canvas, coverage, box, contrasting_colour(rng, canvas[box][coverage >= 128].mean(0)))


def paint_object(rng: np.random.Generator, canvas: np.ndarray, coverage: np.ndarray, box: tuple[slice, slice],
                 colour: np.ndarray) -> None:
    """Composite one object (flat RGB colour, shading across it, fine texture) onto float32 canvas, in place."""
    patch = canvas[box]
    h, w = coverage.shape
    t = rng.uniform(0.0, 2.0 * np.pi)
    xs = (np.arange(w, dtype=np.float32) - w / 2) * math.cos(t)
    ys = (np.arange(h, dtype=np.float32) - h / 2) * math.sin(t)
    shade = (xs[None, :] + ys[:, None]) * np.float32(rng.uniform(0.0, 60.0) / max(h, w))
    fill = cv2.add(_rgb(shade + grain(rng, (h, w), rng.uniform(0.0, 8.0))), tuple(float(c) for c in colour))
    patch += (fill - patch) * _rgb(coverage.astype(np.float32) * np.float32(1 / 255))


def _to_uint8(img: np.ndarray) -> np.ndarray:
    """Round and saturate float32 [H,W,3] (in place; np.clip is several times slower)."""
    np.maximum(img, 0.0, out=img)
    np.minimum(img, 255.0, out=img)
    return (img + np.float32(0.5)).astype(np.uint8)


def photograph(rng: np.random.Generator, canvas: np.ndarray) -> tuple[np.ndarray, int]:
    """Uneven lighting, global contrast/brightness, optional blur, sensor noise -> (uint8 RGB, JPEG quality)."""
    size = canvas.shape[0]
    x = (np.arange(_LOW, dtype=np.float32) - _LOW / 2) / (_LOW / 2)
    vignette = (x[None, :] ** 2 + x[:, None] ** 2) / 2
    gain = 1 + _ramp(rng, _LOW) * np.float32(rng.uniform(0.0, 0.6)) - vignette * np.float32(rng.uniform(0.0, 0.5))
    img = canvas * _rgb(cv2.resize(gain, (size, size), interpolation=cv2.INTER_LINEAR))
    mean = img.mean()
    img = (img - mean) * np.float32(rng.uniform(0.75, 1.2)) + np.float32(mean + rng.uniform(-25.0, 25.0))
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.2))
    img += grain(rng, img.shape, rng.uniform(0.0, 6.0))
    return _to_uint8(img), int(rng.integers(40, 96))


def jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    """The JPEG file of RGB uint8 image at `quality`."""
    _, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes()


def backdrop(rng: np.random.Generator, size: int) -> np.ndarray:
    """[S,S,3] float32 scene without objects: background, strokes, blobs and noise patches."""
    img8 = _to_uint8(_background(rng, size))
    _strokes(rng, img8)  # OpenCV draws anti-aliased strokes on 8-bit images only
    canvas = img8.astype(np.float32)
    _blobs_and_noise(rng, canvas)
    return canvas


def _render(rng: np.random.Generator, image_size: int):
    """(image [S,S,3] uint8 before JPEG, its JPEG quality, visible masks [k,S,S] bool, class ids [k] int64)."""
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32, got {image_size}")
    canvas = backdrop(rng, image_size)
    drawn, masks = _layout(rng, image_size)
    for _, (coverage, box) in drawn:
        _paint(rng, canvas, coverage, box)
    image, quality = photograph(rng, canvas)
    return image, quality, masks, np.array([s.class_id for s, _ in drawn], np.int64)


def render_sample(rng: np.random.Generator, image_size: int = 320) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic photo and its instances, exactly as generate_dataset writes it (JPEG artefacts included).

    Returns image [S,S,3] uint8 RGB, visible masks [k,S,S] bool (back to front, never overlapping) and
    class ids [k] int64, 0-based into DEMO_CLASSES, with 1 <= k <= 12.
    """
    image, quality, masks, classes = _render(rng, image_size)
    decoded = cv2.imdecode(np.frombuffer(jpeg_bytes(image, quality), np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB), masks, classes


def _annotations(masks: np.ndarray, classes: np.ndarray, image_id: int, first_id: int) -> list[dict]:
    """COCO records with compressed-RLE masks (counts as str) for visible masks [k,H,W]."""
    from pycocotools import mask as mask_utils

    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    boxes = masks_to_boxes(masks)
    areas = masks.sum((1, 2))
    return [
        {
            "id": first_id + j,
            "image_id": image_id,
            "category_id": int(classes[j]) + 1,
            "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
            "area": int(areas[j]),
            "bbox": [int(x1), int(y1), int(x2 - x1), int(y2 - y1)],
            "iscrowd": 0,
        }
        for j, (rle, (x1, y1, x2, y2)) in enumerate(zip(rles, boxes))
    ]


def _write_sample(job: tuple[Path, int, int, int]) -> list[dict]:
    """Render image `index`, write its JPEG, return its annotations numbered from 1 (renumbered by the caller)."""
    images_dir, seed, index, image_size = job
    image, quality, masks, classes = _render(sample_rng(seed, index), image_size)
    (images_dir / f"{index:06d}.jpg").write_bytes(jpeg_bytes(image, quality))
    return _annotations(masks, classes, image_id=index + 1, first_id=1)


def generate_dataset(out_dir, num_images: int, *, seed: int = 0, image_size: int = 320, progress: bool = True,
                     workers: int = 0) -> Path:
    """Write out_dir/images/000000.jpg... and out_dir/annotations.json (COCO, category ids 1..6); return out_dir.

    The same seed gives byte-identical files, whatever the number of worker processes (0: this process).
    """
    if num_images < 0:
        raise ValueError(f"num_images must be >= 0, got {num_images}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    jobs = [(out / "images", seed, i, image_size) for i in range(num_images)]
    bar = tqdm(total=num_images, desc="synthetic shapes", unit="img", disable=not progress)
    annotations: list[dict] = []

    def collect(records: list[dict]) -> None:
        for record in records:
            record["id"] = len(annotations) + 1
            annotations.append(record)
        bar.update(1)

    if workers == 0:
        for job in jobs:
            collect(_write_sample(job))
    else:
        from multiprocessing import get_context

        with get_context("spawn").Pool(workers) as pool:
            for records in pool.imap(_write_sample, jobs, chunksize=16):
                collect(records)
    bar.close()
    data = {
        "info": {"description": "yolactedge synthetic shapes", "seed": seed, "image_size": image_size},
        "images": [{"id": i + 1, "file_name": f"{i:06d}.jpg", "width": image_size, "height": image_size}
                   for i in range(num_images)],
        "annotations": annotations,
        "categories": [{"id": j + 1, "name": name, "supercategory": "shape"} for j, name in enumerate(DEMO_CLASSES)],
    }
    (out / "annotations.json").write_text(json.dumps(data))
    return out
