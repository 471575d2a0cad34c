"""Training data: the synthetic shapes benchmark (images and videos), COCO and YouTube-VIS datasets, augmentation."""
from __future__ import annotations

from .augment import EvalTransform, TrainAugment, masks_to_boxes
from .coco import CocoDataset, collate, load_coco_categories
from .synthetic import Shape, generate_dataset, render_sample, sample_rng
from .synthetic_video import generate_videos
from .ytvis import YtvisDataset, frames_as_coco, load_ytvis, write_ytvis

__all__ = [
    "CocoDataset",
    "EvalTransform",
    "Shape",
    "TrainAugment",
    "YtvisDataset",
    "collate",
    "frames_as_coco",
    "generate_dataset",
    "generate_videos",
    "load_coco_categories",
    "load_ytvis",
    "masks_to_boxes",
    "render_sample",
    "sample_rng",
    "write_ytvis",
]
