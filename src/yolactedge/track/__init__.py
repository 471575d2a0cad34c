"""Tracking: identities of detections across the frames of a video (ByteTrack-style, on masks and boxes)."""
from .tracker import UNTRACKED, Track, Tracker, TrackerConfig

__all__ = ["UNTRACKED", "Track", "Tracker", "TrackerConfig"]
