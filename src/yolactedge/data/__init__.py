"""Training data: the synthetic shapes benchmark, COCO-format datasets, and the original's augmentation."""
from __future__ import annotations

from .augment import EvalTransform, TrainAugment, masks_to_boxes
from .coco import CocoDataset, collate, load_coco_categories
from .synthetic import Shape, generate_dataset, render_sample, sample_rng

__all__ = [
    "CocoDataset",
    "EvalTransform",
    "Shape",
    "TrainAugment",
    "collate",
    "generate_dataset",
    "load_coco_categories",
    "masks_to_boxes",
    "render_sample",
    "sample_rng",
]
