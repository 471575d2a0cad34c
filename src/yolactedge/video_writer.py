"""An annotated video written under a temporary name and renamed when closed, so that an interrupted run leaves a
playable file (everything written so far) and never a half-written one under the final name."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np


class VideoFileWriter:
    """MP4 (mp4v) frames at `fps`; the size is taken from the first frame. Use as a context manager."""

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self._partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._writer: cv2.VideoWriter | None = None
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        if self._writer is None:
            self._writer = cv2.VideoWriter(str(self._partial), cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                           rgb.shape[1::-1])
            if not self._writer.isOpened():
                raise OSError(f"{self.path}: cannot write a video here")
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        """Finish the file and give it its name; nothing is left behind if no frame was written."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self._partial, 0o666 & ~umask)
        os.replace(self._partial, self.path)

    def __enter__(self) -> VideoFileWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
