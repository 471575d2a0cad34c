"""Identities across frames: ByteTrack's two-stage association on mask IoU and box motion.

Each frame: every track predicts its box (constant velocity, `motion.BoxMotion`). Detections scoring at least
`high_score` are matched first against all live tracks, lost ones included; the weaker ones (down to
`low_score`) then get a chance against the tracks seen in the previous frame that are still unmatched, which keeps
an object's identity while it is partly hidden and its score drops. A new track starts from an unmatched strong
detection (`new_track_score`) and gets its id once it is seen in `min_hits` frames (at once in the first frame);
a track unseen for more than `max_lost` frames ends. Tracks only match detections of their own class.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..postprocessing import Detections
from .association import assign, box_iou, mask_iou
from .motion import BoxMotion, xyxy_to_cxcywh

UNTRACKED = -1  # the track id of a detection that belongs to no confirmed track


@dataclass(frozen=True)
class TrackerConfig:
    """Thresholds of the association; see the module docstring for what each one does."""

    high_score: float = 0.4
    low_score: float = 0.1
    new_track_score: float = 0.5
    first_match: float = 0.2  # least similarity (mean of box and mask IoU) for a strong detection
    second_match: float = 0.4  # the same for a weak one: it must overlap its track more
    max_lost: int = 30
    min_hits: int = 2
    other_class: float = 0.5  # similarity factor for a detection of another class than the track's (0: never)
    duplicate_iou: float = 0.5  # a detection whose mask overlaps a better one's more than this is the same object

    def __post_init__(self) -> None:
        if not 0 <= self.low_score <= self.high_score <= 1:
            raise ValueError(f"need 0 <= low_score <= high_score <= 1, got {self.low_score}, {self.high_score}")
        if not 0 < self.first_match <= 1 or not 0 < self.second_match <= 1:
            raise ValueError("first_match and second_match must lie in (0, 1]")
        if not 0 <= self.other_class <= 1 or not 0 < self.duplicate_iou <= 1:
            raise ValueError(f"other_class must lie in [0, 1] and duplicate_iou in (0, 1], got {self.other_class}, "
                             f"{self.duplicate_iou}")
        if self.max_lost < 0 or self.min_hits < 1:
            raise ValueError(f"max_lost must be >= 0 and min_hits >= 1, got {self.max_lost}, {self.min_hits}")


@dataclass(eq=False)
class Track:
    """One object: its motion, and its last seen mask (crop, crop box) with the box it was detected in."""

    class_id: int
    motion: BoxMotion
    mask_crop: np.ndarray
    mask_box: np.ndarray
    seen_box: np.ndarray
    track_id: int = UNTRACKED
    hits: int = 1
    lost_for: int = 0
    predicted: np.ndarray = field(default_factory=lambda: np.zeros(4))


class Tracker:
    """Give each detection of a video a track id that persists across frames.

    >>> tracker = Tracker()
    >>> for frame in frames:
    ...     ids = tracker.update(detector(frame).detections)   # int64 (K,), UNTRACKED (-1) where none
    """

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.tracks: list[Track] = []
        self.frames_seen = 0
        self._next_id = 1

    @classmethod
    def at_threshold(cls, score_threshold: float) -> Tracker:
        """A tracker for detections kept at `score_threshold`: those at least 0.1 above it start tracks (as
        ByteTrack's new-track threshold), all of them extend tracks first, weaker ones (down to 0.1, or the
        threshold if lower) may continue one."""
        weak = min(TrackerConfig.low_score, score_threshold)
        start = min(score_threshold + 0.1, 1.0)
        return cls(TrackerConfig(high_score=score_threshold, new_track_score=start, low_score=weak))

    def track(self, detections: Detections, score_threshold: float) -> tuple[Detections, np.ndarray]:
        """ByteTrack's use of `update`: → the detections scoring at least `score_threshold` plus the weaker ones
        that continue a track, and their track ids (UNTRACKED where none).

        Detections that repeat a better one's mask (the same object found as two classes: per-class NMS keeps
        both) are dropped first, so one object cannot start two tracks.
        """
        candidates = detections.subset(detections.scores >= self.config.low_score)
        candidates = candidates.subset(_distinct(candidates, self.config.duplicate_iou))
        ids = self.update(candidates)
        keep = (candidates.scores >= score_threshold) | (ids != UNTRACKED)
        return candidates.subset(keep), ids[keep]

    def update(self, detections: Detections) -> np.ndarray:
        """Associate one frame's detections with the tracks; → track ids int64 (K,), UNTRACKED where none."""
        c = self.config
        for track in self.tracks:
            track.predicted = track.motion.predict()
        ids = np.full(len(detections), UNTRACKED, np.int64)
        strong = np.flatnonzero(detections.scores >= c.high_score)
        weak = np.flatnonzero((detections.scores >= c.low_score) & (detections.scores < c.high_score))
        unmatched_tracks = list(range(len(self.tracks)))
        matched: dict[int, int] = {}
        for candidates, minimum, only_recent in ((strong, c.first_match, False), (weak, c.second_match, True)):
            pool = [t for t in unmatched_tracks if not only_recent or self.tracks[t].lost_for == 0]
            rows, cols = assign(self._similarity(detections, candidates, pool), minimum)
            for row, col in zip(rows.tolist(), cols.tolist()):
                matched[pool[col]] = int(candidates[row])
            unmatched_tracks = [t for t in unmatched_tracks if t not in matched]
        for t, k in matched.items():
            ids[k] = self._extend(self.tracks[t], detections, k)
        self._age(unmatched_tracks)
        taken = set(matched.values())
        for k in strong.tolist():
            if k not in taken and detections.scores[k] >= c.new_track_score:
                ids[k] = self._start(detections, k)
        self.frames_seen += 1
        return ids

    def _similarity(self, detections: Detections, candidates: np.ndarray, pool: list[int]) -> np.ndarray:
        """(len(candidates), len(pool)) mean of box IoU (against the predicted box) and mask IoU (against the
        track's last mask moved by its predicted motion); 0 across classes."""
        if len(candidates) == 0 or len(pool) == 0:
            return np.zeros((len(candidates), len(pool)))
        tracks = [self.tracks[t] for t in pool]
        boxes = box_iou(detections.boxes[candidates], np.stack([t.predicted for t in tracks]))
        similarity = np.zeros_like(boxes)
        for i, k in enumerate(candidates.tolist()):
            crop, crop_box = detections.mask_crops[k], detections.mask_boxes[k]
            for j, track in enumerate(tracks):
                factor = 1.0 if track.class_id == detections.class_ids[k] else self.config.other_class
                if boxes[i, j] == 0 or factor == 0:
                    continue
                if crop.size == 0 or track.mask_crop.size == 0:
                    similarity[i, j] = boxes[i, j] * factor
                    continue
                moved = xyxy_to_cxcywh(track.predicted)[:2] - xyxy_to_cxcywh(track.seen_box)[:2]
                shift = tuple(np.round(moved).astype(int).tolist())
                masks = mask_iou(crop, crop_box, track.mask_crop, track.mask_box, shift)
                similarity[i, j] = (boxes[i, j] + masks) / 2 * factor
        return similarity

    def _extend(self, track: Track, detections: Detections, k: int) -> int:
        track.motion.update(detections.boxes[k])
        track.mask_crop, track.mask_box = detections.mask_crops[k], detections.mask_boxes[k]
        track.seen_box = detections.boxes[k]
        track.hits += 1
        track.lost_for = 0
        if track.track_id == UNTRACKED and track.hits >= self.config.min_hits:
            track.track_id = self._new_id()
        return track.track_id

    def _start(self, detections: Detections, k: int) -> int:
        track = Track(int(detections.class_ids[k]), BoxMotion(detections.boxes[k]), detections.mask_crops[k],
                      detections.mask_boxes[k], detections.boxes[k])
        if self.frames_seen == 0 or self.config.min_hits <= 1:
            track.track_id = self._new_id()
        self.tracks.append(track)
        return track.track_id

    def _age(self, unmatched: list[int]) -> None:
        """Tracks not seen this frame: a tentative one ends at once, a confirmed one after max_lost frames."""
        ended = set()
        for t in unmatched:
            track = self.tracks[t]
            track.lost_for += 1
            if track.track_id == UNTRACKED or track.lost_for > self.config.max_lost:
                ended.add(t)
        self.tracks = [track for t, track in enumerate(self.tracks) if t not in ended]

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1


def _distinct(detections: Detections, duplicate_iou: float) -> np.ndarray:
    """Indices of the detections (best first) whose mask overlaps no better kept one's by more than duplicate_iou."""
    overlapping = box_iou(detections.boxes, detections.boxes) > 0  # [K, K]: masks can only overlap here
    kept: list[int] = []
    for k in range(len(detections)):
        if not any(overlapping[k, j] and mask_iou(detections.mask_crops[k], detections.mask_boxes[k],
                                                  detections.mask_crops[j], detections.mask_boxes[j]) > duplicate_iou
                   for j in kept):
            kept.append(k)
    return np.array(kept, np.int64)
