"""The key-frame schedule of YOLACT-Edge's video mode, without PyTorch: the runtime follows it on every backend."""
from __future__ import annotations


def is_key_frame(index: int, interval: int = 5, phase: int = 0) -> bool:
    """The original's schedule for frames numbered 0, 1, 2, ...: key frames where index % interval == phase.

    Frames before the first such frame are key frames too (the original's YouTube-VIS passes 1..4 do that);
    with phase 0 this is evalvideo's "every 5th frame, starting with the first".
    """
    if interval < 1:
        raise ValueError(f"key-frame interval must be at least 1, got {interval}")
    if not 0 <= phase < interval:
        raise ValueError(f"key-frame phase must be in [0, {interval}), got {phase}")
    if index < 0:
        raise ValueError(f"frame index must be non-negative, got {index}")
    return index % interval == phase or index < phase
