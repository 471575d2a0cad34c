"""Reading images and frames for inference: files, folders, globs, videos and cameras, always as RGB uint8.

Everything goes through `cv2.imdecode(..., IMREAD_COLOR)` on the file's bytes (read with `np.fromfile`, so paths
with spaces or non-ASCII characters work on every platform). That flag alone gives the contract:

- EXIF orientation is applied (the pixels come back the way a photo viewer shows them);
- grayscale becomes 3 equal channels; an alpha channel is dropped (the stored colours are kept, not composited);
- 16-bit images are scaled to 8 bit (value >> 8);
- decoding goes straight to uint8 HxWx3, so a huge image never exists as a float copy.
"""
from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pbm", ".pgm", ".ppm"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})
_MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES
_GLOB_CHARS = frozenset("*?[")

Source = str | os.PathLike | int


class ImageError(ValueError):
    """An image or source that cannot be read; the message says which and why, in one line."""


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to RGB uint8 [H, W, 3], EXIF orientation applied (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: {'is a folder, not an image' if path.is_dir() else 'no such image file'}")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if data.size == 0:
        raise ImageError(f"{path}: empty file")
    try:
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as exc:  # e.g. more pixels than CV_IO_MAX_IMAGE_PIXELS allows
        raise ImageError(f"{path}: cannot decode ({_one_line(str(exc))})") from None
    if bgr is None:
        raise ImageError(f"{path}: cannot decode (corrupt, truncated, or not an image format OpenCV reads)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Check an in-memory image: uint8 [H, W, 3] RGB passes unchanged; [H, W] / [H, W, 1] gray and [H, W, 4] RGBA
    are converted (alpha dropped). Anything else raises ImageError: no guessing at value ranges of other dtypes."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected a numpy array or a path, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ImageError(f"expected a uint8 image (RGB 0..255), got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return np.ascontiguousarray(image[..., :3])
    raise ImageError(f"expected an image of shape [H, W, 3] (or gray/RGBA), got {list(image.shape)}")


def expand_sources(sources: Source | Iterable[Source]) -> Iterator[str | int]:
    """The files and cameras that `sources` name, in order, without reading them: file paths as str, cameras as int.

    A source is one of:
    - a file (image or video): itself;
    - a folder: its image and video files (by suffix), sorted by name, **not recursive**;
    - a glob pattern (`*`, `?`, `[`; `**` recurses): the sorted matching files;
    - a camera index, int or digit string such as "0" (when no file of that name exists).

    A source that names nothing (missing path, folder without images, pattern without matches) raises
    ImageError when the iteration reaches it.
    """
    if isinstance(sources, (str, os.PathLike, int)):
        sources = [sources]
    for source in sources:
        if isinstance(source, int) or (isinstance(source, str) and source.isdigit() and not Path(source).exists()):
            yield int(source)
            continue
        text = os.fspath(source)
        path = Path(text)
        if path.is_file():
            yield text
        elif path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _MEDIA_SUFFIXES)
            if not files:
                raise ImageError(f"{path}: folder holds no images or videos")
            yield from (str(f) for f in files)
        elif _GLOB_CHARS & set(text):
            files = [p for p in sorted(glob.glob(text, recursive=True)) if Path(p).is_file()]
            if not files:
                raise ImageError(f"{text}: pattern matches no files")
            yield from files
        else:
            raise ImageError(f"{text}: no such file, folder or camera")


def iter_sources(sources: Source | Iterable[Source]) -> Iterator[tuple[str, np.ndarray]]:
    """Yield `(name, rgb_uint8_frame)` for every image and video frame that `sources` name (see
    `expand_sources`), decoding one at a time. An image's name is its path; a video frame's is
    `"<path>#<frame index>"`, a camera frame's `"camera<i>#<frame index>"`. Files with a video suffix
    (VIDEO_SUFFIXES) are read as videos, all others as images. An unreadable file raises ImageError.
    """
    for item in expand_sources(sources):
        if isinstance(item, int) or Path(item).suffix.lower() in VIDEO_SUFFIXES:
            yield from iter_video(item)
        else:
            yield item, load_image(item)


def iter_video(source: str | os.PathLike | int) -> Iterator[tuple[str, np.ndarray]]:
    """Frames of a video file or camera (int index) as `(name, rgb_uint8)`; see `iter_sources` for names."""
    with VideoReader(source) as video:
        yield from video


class VideoReader:
    """A video file or camera (int index), opened at once so that its frame rate is known before the first frame.

    Iterating yields `(name, rgb_uint8)` as `iter_sources` names them. A frame that cannot be decoded in the
    middle of a file is skipped (up to MAX_BAD_RUN in a row) and listed in `problems`, as is a file that ends
    before the frame count its header gives; a camera that stops delivering ends the stream cleanly. A source
    that yields no frame at all raises ImageError.
    """

    DEFAULT_FPS = 25.0  # cameras and files that do not say their rate
    MAX_BAD_RUN = 8

    def __init__(self, source: str | os.PathLike | int) -> None:
        self.source = source
        self.is_camera = isinstance(source, int)
        if self.is_camera:
            self.prefix, self._capture = f"camera{source}", cv2.VideoCapture(source)
        else:
            self.prefix, self._capture = os.fspath(source), cv2.VideoCapture(os.fspath(source))
        if not self._capture.isOpened():
            self._capture.release()
            hint = " (no such camera?)" if self.is_camera else ""
            raise ImageError(f"{self.prefix}: cannot open as a video{hint}")
        rate = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(rate) if np.isfinite(rate) and 0 < rate <= 1000 else self.DEFAULT_FPS
        count = 0 if self.is_camera else int(max(self._capture.get(cv2.CAP_PROP_FRAME_COUNT), 0))
        self.expected_frames = count or None
        self.problems: list[str] = []

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        index, delivered, bad = 0, 0, []
        while True:
            ok, bgr = self._capture.read()
            if ok:
                if bad:
                    self.problems.append(f"{self.prefix}: skipped undecodable frame(s) {_ranges(bad)}")
                    bad = []
                yield f"{self.prefix}#{index}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                delivered += 1
            elif self.is_camera or self.expected_frames is None or index >= self.expected_frames - 1 \
                    or len(bad) >= self.MAX_BAD_RUN:
                break
            else:
                bad.append(index)
            index += 1
        if delivered == 0:
            raise ImageError(f"{self.prefix}: no frames could be read")
        if self.expected_frames and delivered + len(bad) < self.expected_frames:
            self.problems.append(f"{self.prefix}: ended after {delivered} of {self.expected_frames} frames")

    def close(self) -> None:
        self._capture.release()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _ranges(indices: list[int]) -> str:
    return f"{indices[0]}" if len(indices) == 1 else f"{indices[0]}-{indices[-1]}"


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "unknown error"
