"""Calibration images for integer quantisation, prepared exactly as at inference.

Inference squashes an RGB uint8 image to the model's S×S input with `cv2.resize(..., INTER_LINEAR)` and feeds
it as float32 0..255; calibration does the same. Images are kept as uint8 NHWC (4× less memory than float32:
100 images at 550 take 91 MB) and become float32 one at a time when the converter asks for them.
"""
from __future__ import annotations

import os
import random
import warnings
from pathlib import Path

import cv2
import numpy as np

from ..runtime.images import ImageError, load_image
from .common import ExportError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
MIN_CALIBRATION_IMAGES = 10
DEFAULT_CALIB_SEED = 1337  # which images (or synthetic renders) calibrate when no seed is given
SYNTHETIC_WARNING = (
    "no calibration folder given: calibrating on {count} synthetic renders; "
    "real images from the deployment domain calibrate better (--calib DIR)"
)


def find_images(folder: str | os.PathLike) -> list[Path]:
    """Every jpg/jpeg/png/bmp file under `folder` (recursive, case-insensitive extensions), sorted by path."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ExportError(f"{folder}: calibration folder not found")
    found = [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def preprocess(image_rgb: np.ndarray, size: int) -> np.ndarray:
    """RGB uint8 [H, W, 3] → uint8 [size, size, 3], resized as at inference (the model takes it as float 0..255)."""
    return cv2.resize(np.ascontiguousarray(image_rgb), (size, size), interpolation=cv2.INTER_LINEAR)


def load_calibration_images(
    folder: str | os.PathLike,
    count: int = 100,
    seed: int = DEFAULT_CALIB_SEED,
    size: int = 550,
    *,
    progress: bool = True,
    min_count: int = MIN_CALIBRATION_IMAGES,
    exclude: set[str] | frozenset[str] = frozenset(),
) -> tuple[np.ndarray, dict]:
    """`count` images of `folder` chosen at random with `seed` → (uint8 [N, size, size, 3] RGB, info).

    Unreadable files are skipped (one warning lists them) and replaced by the next ones in the shuffled order.
    Fewer than min(min_count, count) usable images is an ExportError; fewer than `count` is a warning.
    `exclude` holds paths relative to `folder` (posix) that must not be used, e.g. the calibration set when
    picking held-out images.
    """
    if count < 1:
        raise ExportError(f"calibration image count must be at least 1, got {count}")
    folder = Path(folder).expanduser()
    paths = [p for p in find_images(folder) if p.relative_to(folder).as_posix() not in exclude]
    if not paths and not exclude:
        raise ExportError(f"{folder}: no calibration images found (searched recursively for {', '.join(IMAGE_EXTENSIONS)})")
    random.Random(seed).shuffle(paths)
    images, used, unreadable = [], [], []
    bar = progress_bar(total=min(count, len(paths)), desc="calibration images", enabled=progress)
    try:
        for path in paths:
            if len(images) == count:
                break
            name = path.relative_to(folder).as_posix()
            try:
                image = load_image(path)  # the same decoding as inference (EXIF, gray, 16-bit)
            except ImageError:
                unreadable.append(name)
                continue
            images.append(preprocess(image, size))
            used.append(name)
            bar.update(1)
    finally:
        bar.close()
    if unreadable:
        shown = ", ".join(unreadable[:5]) + (", ..." if len(unreadable) > 5 else "")
        warnings.warn(f"{folder}: skipped {len(unreadable)} unreadable image(s): {shown}", stacklevel=2)
    needed = min(min_count, count)
    if not exclude and len(images) < needed:
        raise ExportError(
            f"{folder}: only {len(images)} usable calibration image(s) ({len(unreadable)} unreadable); "
            f"at least {needed} needed: add images to the folder or lower --calib-count"
        )
    if not exclude and len(images) < count:
        warnings.warn(f"{folder}: calibrating on {len(images)} images, fewer than the {count} requested", stacklevel=2)
    info = {
        "source": str(folder), "found": len(paths), "requested": count, "used": len(images),
        "unreadable": unreadable, "seed": seed, "files": used,
    }
    array = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    return array, info


def synthetic_images(count: int, seed: int, size: int, *, progress: bool = True) -> np.ndarray:
    """`count` real-looking synthetic renders (the demo dataset's generator) → uint8 [N, size, size, 3] RGB."""
    from ..data.synthetic import render_sample, sample_rng

    out = np.empty((count, size, size, 3), np.uint8)
    bar = progress_bar(total=count, desc="synthetic images", enabled=progress)
    try:
        for i in range(count):
            image, _, _ = render_sample(sample_rng(seed, i), size)
            out[i] = image if image.shape[:2] == (size, size) else preprocess(image, size)
            bar.update(1)
    finally:
        bar.close()
    return out


def calibration_dataset(
    calib: str | os.PathLike | None, count: int, seed: int, size: int, *, progress: bool = True
) -> tuple[np.ndarray, dict]:
    """Images from `calib`, or synthetic renders (with a warning) when it is None → (uint8 NHWC, info)."""
    if calib is not None:
        return load_calibration_images(calib, count, seed, size, progress=progress)
    warnings.warn(SYNTHETIC_WARNING.format(count=count), stacklevel=2)
    images = synthetic_images(count, seed, size, progress=progress)
    return images, {"source": "synthetic", "found": count, "requested": count, "used": count, "unreadable": [],
                    "seed": seed, "files": []}


def held_out_images(
    calib: str | os.PathLike | None, count: int, seed: int, size: int, *, calibration_files=()
) -> tuple[np.ndarray, str]:
    """Verification images that calibration did not see → (uint8 NHWC, description).

    From the calibration folder when it has images left over, else synthetic renders with a different seed.
    """
    if calib is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            images, info = load_calibration_images(
                calib, count, seed, size, progress=False, min_count=1, exclude=frozenset(calibration_files)
            )
        if len(images):
            return images, f"{len(images)} held-out images from {calib}"
    return synthetic_images(count, seed, size, progress=False), f"{count} synthetic renders (seed {seed})"


def representative_batches(samples, *, progress: bool = True, desc: str = "calibrating", file=None):
    """The converter's representative dataset, with a bar: one float32 [1, S, S, 3] 0..255 batch per image of a
    uint8 NHWC array, or for a model of several inputs each sample {input name: float32 array} as it is."""
    bar = progress_bar(total=len(samples), desc=desc, enabled=progress, file=file)
    try:
        for sample in samples:
            yield sample if isinstance(sample, dict) else [sample[None].astype(np.float32)]
            bar.update(1)
    finally:
        bar.close()


def progress_bar(total: int, desc: str, enabled: bool, file=None):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False, dynamic_ncols=True, file=file)


# --- video models: consecutive frames -----------------------------------------------------------------------------

VIDEO_GROUP = 5  # calibration frames come in groups: a key frame and the frames warped from it (interval 5)
# Four groups at least: on 10 frames (two synthetic videos) the tiny test model's int8 warped file had a scores
# error of 0.54 against float and failed verification; on 20 and 40 frames, 0.062 and 0.075.
MIN_VIDEO_FRAMES = 4 * VIDEO_GROUP
SYNTHETIC_VIDEO_WARNING = (
    "no calibration folder given: calibrating on {count} frames of synthetic videos; "
    "frames of videos from the deployment domain calibrate better (--calib DIR of consecutive frames)"
)


def calibration_frames(calib: str | os.PathLike | None, count: int, seed: int, size: int, *,
                       progress: bool = True) -> tuple[np.ndarray, dict]:
    """`count` consecutive frames → (uint8 [N, size, size, 3], info): the images of `calib` in sorted path order
    (the frames of a video, as extracted by ffmpeg), else synthetic videos of VIDEO_GROUP frames each (with a
    warning). Frame k * VIDEO_GROUP of the result is a key frame, the next VIDEO_GROUP - 1 are warped from it."""
    if count < MIN_VIDEO_FRAMES:
        raise ExportError(f"a video model calibrates on at least {MIN_VIDEO_FRAMES} consecutive frames (key frames "
                          f"and the {VIDEO_GROUP - 1} frames warped from each); --calib-count is {count}")
    if calib is None:
        warnings.warn(SYNTHETIC_VIDEO_WARNING.format(count=count), stacklevel=2)
        frames = synthetic_video_frames(count, seed, size, progress=progress)
        return frames, {"source": "synthetic video", "found": count, "requested": count, "used": count,
                        "unreadable": [], "seed": seed, "files": [], "next": 0}
    frames, info = frame_sequence(calib, count, size, progress=progress)
    if len(frames) < MIN_VIDEO_FRAMES:
        raise ExportError(f"{calib}: only {len(frames)} usable calibration frame(s); a video model needs at least "
                          f"{MIN_VIDEO_FRAMES} consecutive frames: add frames to the folder")
    if len(frames) < count:
        warnings.warn(f"{calib}: calibrating on {len(frames)} frames, fewer than the {count} requested", stacklevel=2)
    return frames, info


def held_out_frames(calib: str | os.PathLike | None, count: int, seed: int, size: int, *,
                    start: int = 0) -> tuple[np.ndarray, str]:
    """Consecutive verification frames that calibration did not see → (uint8 NHWC, description): the sorted
    images of `calib` from path index `start` on when at least two are left, else one synthetic video."""
    if calib is not None:
        frames, _ = frame_sequence(calib, count, size, start=start, progress=False)
        if len(frames) >= 2:
            return frames, f"{len(frames)} consecutive held-out frames from {calib}"
    frames = synthetic_video_frames(count, seed, size, group=count, progress=False)
    return frames, f"{count} consecutive frames of a synthetic video (seed {seed})"


def frame_sequence(folder: str | os.PathLike, count: int, size: int, *, start: int = 0,
                   progress: bool = True) -> tuple[np.ndarray, dict]:
    """Up to `count` readable images of `folder` in sorted path order from index `start` → (uint8 NHWC, info with
    "files" used and "next", the path index after the last one read)."""
    folder = Path(folder).expanduser()
    paths = find_images(folder)
    if not paths:
        raise ExportError(f"{folder}: no calibration images found (searched recursively for "
                          f"{', '.join(IMAGE_EXTENSIONS)})")
    frames, used, unreadable, index = [], [], [], start
    bar = progress_bar(total=count, desc="calibration frames", enabled=progress)
    try:
        while index < len(paths) and len(frames) < count:
            name = paths[index].relative_to(folder).as_posix()
            index += 1
            try:
                frames.append(preprocess(load_image(paths[index - 1]), size))
                used.append(name)
                bar.update(1)
            except ImageError:
                unreadable.append(name)
    finally:
        bar.close()
    if unreadable:
        warnings.warn(f"{folder}: skipped {len(unreadable)} unreadable image(s): {', '.join(unreadable[:5])}",
                      stacklevel=3)
    info = {"source": str(folder), "found": len(paths), "requested": count, "used": len(frames),
            "unreadable": unreadable, "files": used, "next": index}
    return (np.stack(frames) if frames else np.zeros((0, size, size, 3), np.uint8)), info


def synthetic_video_frames(count: int, seed: int, size: int, *, group: int = VIDEO_GROUP,
                           progress: bool = True) -> np.ndarray:
    """`count` frames of synthetic videos (`data.synthetic_video`), `group` consecutive frames per video."""
    from ..data.synthetic_video import render_frames

    out = np.empty((count, size, size, 3), np.uint8)
    bar = progress_bar(total=count, desc="synthetic frames", enabled=progress)
    try:
        for video, first in enumerate(range(0, count, group)):
            for k, (image, *_) in enumerate(render_frames(seed, video, size, min(group, count - first))):
                out[first + k] = image
                bar.update(1)
    finally:
        bar.close()
    return out
