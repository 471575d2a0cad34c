"""COCO-format instance-segmentation data for training; pycocotools decodes the masks.

The annotation file is checked record by record up front so a bad file fails with the record's name, not with a
crash deep inside training. Crowd regions are returned apart (`crowd_boxes`): the original's matcher ignores
anchors that overlap them above IoU 0.7 instead of calling them background.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class _Instance:
    box: tuple[float, float, float, float]  # pixel x1y1x2y2
    label: int                              # contiguous 0-based; -1 for a crowd region
    segmentation: object


@dataclass(frozen=True)
class _Image:
    id: int
    file_name: str
    width: int
    height: int


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class _Checker:
    """Raises ValueError("<file>: <record>: <problem>") for records that break the COCO format."""

    def __init__(self, path: Path):
        self.name = path.name

    def require(self, ok: bool, where: str, problem: str) -> None:
        if not ok:
            raise ValueError(f"{self.name}: {where}: {problem}")

    def records(self, data: dict, key: str, required: bool = True) -> list:
        self.require(key in data or not required, "top level", f"missing '{key}' list")
        records = data.get(key, [])
        self.require(isinstance(records, list), "top level", f"'{key}' must be a list")
        for i, record in enumerate(records):
            self.require(isinstance(record, dict), f"{key}[{i}]", "must be an object")
            self.require(_is_int(record.get("id")), f"{key}[{i}]", "missing integer 'id'")
        dupes = sorted(i for i, n in Counter(r["id"] for r in records).items() if n > 1)
        self.require(not dupes, key, f"duplicate ids {dupes[:5]}")
        return records


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"annotation file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path.name}: not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: top level must be a JSON object")
    return data


def _parse_categories(data: dict, check: _Checker) -> tuple[list[int], list[str]]:
    cats = sorted(check.records(data, "categories"), key=lambda c: c["id"])
    check.require(len(cats) > 0, "categories", "need at least one category")
    for c in cats:
        check.require(isinstance(c.get("name"), str), f"category id {c['id']}", "missing string 'name'")
    return [c["id"] for c in cats], [c["name"] for c in cats]


def load_coco_categories(annotation_file) -> tuple[list[int], list[str]]:
    """(category ids, class names) sorted by id: label i of a CocoDataset is category_ids[i]."""
    path = Path(annotation_file)
    return _parse_categories(_read_json(path), _Checker(path))


def _parse_image(record: dict, check: _Checker) -> _Image:
    where = f"image id {record['id']}"
    check.require(isinstance(record.get("file_name"), str) and record["file_name"], where, "missing 'file_name'")
    for key in ("width", "height"):
        check.require(_is_int(record.get(key)) and record[key] > 0, where, f"'{key}' must be a positive integer")
    return _Image(record["id"], record["file_name"], record["width"], record["height"])


def _check_segmentation(seg, image: _Image, where: str, check: _Checker) -> None:
    """Polygons (list of flat [x, y, ...] lists) or RLE {size: [h, w], counts: str or list of ints}."""
    if isinstance(seg, list):
        check.require(len(seg) > 0, where, "segmentation polygon list is empty")
        for poly in seg:
            ok = isinstance(poly, list) and len(poly) >= 6 and len(poly) % 2 == 0 and all(map(_is_number, poly))
            check.require(ok, where, "each polygon must be a list of at least 3 x, y pairs")
        return
    check.require(isinstance(seg, dict) and "counts" in seg and "size" in seg, where,
                  "segmentation must be a polygon list or an RLE object with 'size' and 'counts'")
    check.require(seg["size"] == [image.height, image.width], where,
                  f"RLE size {seg['size']} differs from image size [{image.height}, {image.width}]")
    counts = seg["counts"]
    if isinstance(counts, list):
        ok = all(_is_int(c) and c >= 0 for c in counts) and sum(counts) == image.height * image.width
        check.require(ok, where, "uncompressed RLE counts must be non-negative integers summing to height*width")
    else:
        check.require(isinstance(counts, str), where, "RLE counts must be a string or a list of integers")


def _parse_annotation(ann: dict, images: dict, label_of: dict, check: _Checker) -> tuple[int, _Instance]:
    where = f"annotation id {ann['id']}"
    image_id, category_id = ann.get("image_id"), ann.get("category_id")
    check.require(_is_int(image_id) and image_id in images, where, f"unknown image_id {image_id!r}")
    check.require(_is_int(category_id) and category_id in label_of, where, f"unknown category_id {category_id!r}")
    bbox = ann.get("bbox")
    check.require(isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox)), where,
                  "bbox must have 4 numbers")
    check.require(bbox[2] >= 0 and bbox[3] >= 0, where, "bbox width and height must be >= 0")
    crowd = ann.get("iscrowd", 0)
    check.require(crowd in (0, 1), where, "iscrowd must be 0 or 1")
    check.require("segmentation" in ann, where, "missing 'segmentation'")
    _check_segmentation(ann["segmentation"], images[image_id], where, check)
    x, y, w, h = (float(v) for v in bbox)
    label = -1 if crowd else label_of[category_id]
    return image_id, _Instance((x, y, x + w, y + h), label, ann["segmentation"])


def _decode_masks(segmentations: list, height: int, width: int) -> np.ndarray:
    """Masks [k,H,W] uint8 0/1 from polygons, compressed RLE or uncompressed RLE."""
    from pycocotools import mask as mask_utils

    if not segmentations:
        return np.zeros((0, height, width), np.uint8)
    rles = []
    for seg in segmentations:
        if isinstance(seg, list):
            rles.append(mask_utils.merge(mask_utils.frPyObjects(seg, height, width)))
        elif isinstance(seg["counts"], list):
            rles.append(mask_utils.frPyObjects(seg, height, width))
        else:
            rles.append({"size": seg["size"], "counts": seg["counts"].encode("ascii")})
    return np.ascontiguousarray(mask_utils.decode(rles).transpose(2, 0, 1))


class CocoDataset:
    """Images and instance targets from a COCO annotation file; category ids map to labels in sorted-id order.

    __getitem__(i) -> (image [3,S,S] float32 0..255 RGB, target) with target holding boxes [k,4] float32
    normalised x1y1x2y2, labels [k] int64, masks [k,S,S] uint8, crowd_boxes [m,4] float32 and image_id.
    `transform` takes and returns (image, masks, boxes, labels) like augment.TrainAugment, crowd regions
    riding along with label -1; without one images keep their size and boxes come from the annotations.
    """

    def __init__(self, image_dir, annotation_file, *, transform=None):
        self.image_dir = Path(image_dir)
        path = Path(annotation_file)
        data, check = _read_json(path), _Checker(path)
        self.category_ids, self.class_names = _parse_categories(data, check)
        label_of = {cid: i for i, cid in enumerate(self.category_ids)}
        self.images = [_parse_image(r, check) for r in check.records(data, "images")]
        by_id = {img.id: img for img in self.images}
        self._instances: dict[int, list[_Instance]] = {img.id: [] for img in self.images}
        for ann in check.records(data, "annotations", required=False):
            image_id, inst = _parse_annotation(ann, by_id, label_of, check)
            self._instances[image_id].append(inst)
        for insts in self._instances.values():
            insts.sort(key=lambda inst: inst.label < 0)  # crowds last, as the original orders them
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def _read_image(self, info: _Image) -> np.ndarray:
        path = self.image_dir / info.file_name
        if not path.is_file():
            raise FileNotFoundError(f"image file not found: {path} (image id {info.id})")
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"could not decode image file {path} (image id {info.id})")
        if bgr.shape[:2] != (info.height, info.width):
            raise ValueError(f"image file {path} is {bgr.shape[1]}x{bgr.shape[0]} but its record says "
                             f"{info.width}x{info.height} (image id {info.id})")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict]:
        info = self.images[index]
        image = self._read_image(info)
        insts = self._instances[info.id]
        masks = _decode_masks([inst.segmentation for inst in insts], info.height, info.width)
        boxes = np.array([inst.box for inst in insts], np.float32).reshape(-1, 4)
        labels = np.array([inst.label for inst in insts], np.int64)
        if self.transform is None:
            scale = np.array([info.width, info.height, info.width, info.height], np.float32)
            image, boxes = image.astype(np.float32), np.clip(boxes / scale, 0, 1)
        else:
            image, masks, boxes, labels = self.transform(image, masks, boxes, labels)
        crowd = labels < 0
        target = {
            "boxes": boxes[~crowd],
            "labels": labels[~crowd],
            "masks": masks[~crowd],
            "crowd_boxes": boxes[crowd],
            "image_id": info.id,
        }
        return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32), target


def collate(batch: list) -> tuple[np.ndarray, list[dict]]:
    """Stack images into [B,3,S,S] float32; targets stay a list since instance counts differ per image."""
    shapes = sorted({image.shape for image, _ in batch})
    if len(shapes) > 1:
        raise ValueError(f"cannot stack images of shapes {shapes}: give the dataset a transform that resizes")
    return np.stack([image for image, _ in batch]).astype(np.float32, copy=False), [t for _, t in batch]
