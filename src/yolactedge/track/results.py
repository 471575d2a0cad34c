"""Tracked predictions of one video → YouTube-VIS results: one entry per track with a mask per frame or null.

The format is the one YouTube-VIS evaluation reads: {"video_id", "category_id", "score", "segmentations"}, where
segmentations[t] is a COCO RLE {"size", "counts"} or None where the track is not seen in frame t.
"""
from __future__ import annotations

from collections import Counter, defaultdict

from ..postprocessing import Detections
from ..postprocessing.rle import encode_crop
from .tracker import UNTRACKED


class VideoTrackResults:
    """Collect a video's tracked predictions frame by frame; `entries(video_id, category_ids)` gives the results."""

    def __init__(self) -> None:
        self.frames = 0
        self._masks: dict[int, dict[int, dict]] = defaultdict(dict)  # track id → frame → RLE
        self._scores: dict[int, list[float]] = defaultdict(list)
        self._classes: dict[int, Counter] = defaultdict(Counter)

    def add(self, detections: Detections, track_ids) -> None:
        """One frame's detections and their track ids; frames must come in order, one call each."""
        if track_ids is None:
            raise ValueError("YouTube-VIS results need tracked predictions (track=True)")
        d = detections
        for k, track_id in enumerate(track_ids.tolist()):
            if track_id == UNTRACKED:
                continue
            rle = encode_crop(d.mask_crops[k], d.mask_boxes[k].tolist(), d.image_size)
            self._masks[track_id][self.frames] = rle
            self._scores[track_id].append(float(d.scores[k]))
            self._classes[track_id][int(d.class_ids[k])] += 1
        self.frames += 1

    def entries(self, video_id: int, category_ids=None) -> list[dict]:
        """One result per track: its most frequent class, its mean score, and its mask in every frame (or None)."""
        results = []
        for track_id in sorted(self._masks):
            class_id = self._classes[track_id].most_common(1)[0][0]
            scores = self._scores[track_id]
            results.append({
                "video_id": video_id,
                "track_id": track_id,
                "category_id": int(category_ids[class_id]) if category_ids is not None else class_id + 1,
                "score": sum(scores) / len(scores),
                "segmentations": [self._masks[track_id].get(t) for t in range(self.frames)],
            })
        return results
