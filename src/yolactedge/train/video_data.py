"""Frame pairs from a YouTube-VIS dataset for the video training stages.

A pair is (key frame, current frame) of one video, the key frame `gap` frames earlier (1 <= gap <= max_gap),
both resized to the model's input without augmentation so that the flow between them is the video's own.
The original samples its reference frame 2..5 frames away (yolact_edge_vid_config's frame offsets); the gap
here starts at 1 so that short videos give pairs too. Which pairs a step trains on is a pure function of
(seed, iteration).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch


class VideoDataError(ValueError):
    """A dataset a video stage cannot train on; the message says why in one line."""


def _annotation_file(data: str | os.PathLike) -> Path:
    path = Path(data)
    ann = path / "annotations.json" if path.is_dir() else path
    if not ann.is_file():
        raise VideoDataError(f"{path}: no YouTube-VIS annotations.json there (make one: yolactedge data synth-video)")
    return ann


def check_video_dataset(data: str | os.PathLike) -> Path:
    """The annotation file of a YouTube-VIS dataset, or a VideoDataError (a COCO image set is named as such)."""
    ann = _annotation_file(data)
    try:
        keys = set(json.loads(ann.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
        raise VideoDataError(f"{ann}: not a JSON object ({exc})") from None
    if "videos" not in keys:
        kind = "a COCO image dataset" if "images" in keys else "not a YouTube-VIS file"
        raise VideoDataError(f"{ann}: {kind} (no 'videos'); video stages train on a YouTube-VIS dataset "
                             f"of frame sequences, e.g. one written by yolactedge data synth-video")
    return ann


class FramePairs:
    """The frames of a YouTube-VIS dataset as training images, and `batch(iteration)` of key/current pairs."""

    def __init__(self, data: str | os.PathLike, input_size: int, *, max_gap: int, seed: int) -> None:
        from ..data import CocoDataset, EvalTransform
        from ..data.ytvis import frames_as_coco, load_ytvis

        if max_gap < 1:
            raise VideoDataError(f"the largest key-frame gap must be at least 1, got {max_gap}")
        ann = check_video_dataset(data)
        videos = load_ytvis(ann)
        missing = videos.missing_frames()
        if missing:
            raise VideoDataError(f"{ann}: {len(missing)} frame files are missing, e.g. {missing[0]}")
        with tempfile.TemporaryDirectory() as tmp:  # CocoDataset reads its file once, in __init__
            coco_file = Path(tmp) / "frames.json"
            coco_file.write_text(json.dumps(frames_as_coco(videos)))
            self.frames = CocoDataset(videos.frames_dir, coco_file, transform=EvalTransform(input_size))
        self.class_names = tuple(self.frames.class_names)
        self.annotation_file = ann
        starts = np.cumsum([0] + [v.length for v in videos.videos])
        # (first dataset index, length) of every video that has a pair at all
        self.videos = [(int(s), v.length) for s, v in zip(starts, videos.videos) if v.length >= 2]
        if not self.videos:
            raise VideoDataError(f"{ann}: every video has a single frame; video stages need frame pairs")
        self.max_gap, self.seed = max_gap, seed
        self.num_frames = int(starts[-1])

    def pair_indices(self, iteration: int, batch_size: int) -> list[tuple[int, int]]:
        """(key, current) dataset indices of the pairs of step `iteration`."""
        rng = np.random.default_rng([self.seed, iteration])
        pairs = []
        for _ in range(batch_size):
            start, length = self.videos[int(rng.integers(len(self.videos)))]
            current = int(rng.integers(1, length))
            gap = int(rng.integers(1, min(self.max_gap, current) + 1))
            pairs.append((start + current - gap, start + current))
        return pairs

    def batch(self, iteration: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
        """Key frames [B,3,S,S], current frames [B,3,S,S] (RGB 0..255) and the current frames' loss targets."""
        keys, currents, targets = [], [], []
        for key_index, current_index in self.pair_indices(iteration, batch_size):
            keys.append(self.frames[key_index][0])
            image, target = self.frames[current_index]
            currents.append(image)
            targets.append({k: v for k, v in target.items() if k != "image_id"})
        return torch.from_numpy(np.stack(keys)), torch.from_numpy(np.stack(currents)), targets
