"""Synthetic videos: the shapes of `data synth` moving over T frames, each object one track, in the YouTube-VIS layout.

Objects drift with a constant velocity plus small noise, spin and grow or shrink; some start just outside the
frame heading in. They roam a world wider than the frame and bounce at its edge, so an object that leaves can
come back. Depth order is fixed per video, so objects pass in front of and behind one another. The camera pans
(the whole scene shifts) and the background drifts slowly on its own. A frame paints and labels exactly the
objects that `data synth`'s visibility rule keeps (`visible_shapes`): one hidden too much, behind others or past
the border, is neither painted nor labelled in that frame (null) and comes back later with the same track id.

Objects keep their colour and shading, and the camera its lighting, blur and JPEG quality, over a video. Only the
background's sensor noise changes from frame to frame: objects are painted over it, and the camera step draws
its own noise from the same generator state in every frame, so that noise repeats. Video v comes from generators seeded by (seed, v, stream) alone, so
the files do not depend on the number of videos or of worker processes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..config import DEMO_CLASSES
from ..postprocessing import rle
from .augment import masks_to_boxes
from .synthetic import (
    SIZE_RANGE,
    Shape,
    backdrop,
    contrasting_colour,
    grain,
    jpeg_bytes,
    paint_object,
    photograph,
    sample_shapes,
    visible_shapes,
)
from .ytvis import write_ytvis

WORLD_MARGIN = 0.3          # objects roam this fraction of the image side beyond each frame edge, bouncing there
SPEED_RANGE = (0.004, 0.03)  # object speed per frame, fraction of the image side (log-uniform)
MOTION_NOISE = 0.1          # per-frame jitter of every motion, as a fraction of its speed
MAX_SPIN = 0.05             # radians per frame
MAX_GROWTH = 0.015          # relative size change per frame
ENTERING_FRACTION = 0.3     # objects that start just outside the frame, heading in
CAMERA_SPEED, CAMERA_RANGE = 0.003, 0.08  # the camera pans this fraction of the side per frame, this far at most
DRIFT_SPEED, DRIFT_RANGE = 0.002, 0.04    # and the background drifts on its own, slower
SENSOR_NOISE = 2.0          # standard deviation of the noise that changes every frame
_MOTION, _BACKDROP, _CAMERA, _APPEARANCE, _NOISE = range(5)  # independent random streams of one video


def video_rng(seed: int, video: int, *stream: int) -> np.random.Generator:
    """The generator of one random stream (motion, backdrop, ...) of video `video` of the dataset with `seed`."""
    return np.random.default_rng([seed, video, *stream])


@dataclass(frozen=True)
class Scene:
    """Where everything is: shapes[t][j] is track j in frame t (image pixels, back to front), and the frame's
    top-left corner on the backdrop canvas of side backdrop_size."""

    shapes: list[list[Shape]]
    backdrop_corners: np.ndarray  # [T,2] int x, y
    backdrop_size: int


def _bounce(position: np.ndarray, velocity: np.ndarray, low: float, high: float) -> None:
    """Reverse the velocity components that carry a position past [low, high], in place."""
    velocity[((position < low) & (velocity < 0)) | ((position > high) & (velocity > 0))] *= -1


def _wander(rng: np.random.Generator, frames: int, speed: float, limit: float) -> np.ndarray:
    """[T,2] offsets from 0: a constant velocity plus small noise, bouncing within ±limit (a slow pan)."""
    angle = rng.uniform(0.0, 2.0 * np.pi)
    velocity = speed * np.array([math.cos(angle), math.sin(angle)])
    position, path = np.zeros(2), np.zeros((frames, 2))
    for t in range(frames):
        path[t] = position
        position = position + velocity + rng.normal(0.0, MOTION_NOISE * speed, 2)
        _bounce(position, velocity, -limit, limit)
        position = np.clip(position, -limit, limit)
    return path


def _entry_points(rng: np.random.Generator, sizes: np.ndarray, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres just outside a random frame edge [n,2] and unit headings [n,2] towards a point inside the frame."""
    n = len(sizes)
    along = rng.uniform(0.0, image_size, n)
    beyond = -sizes / 2 - rng.uniform(0.0, 0.05 * image_size, n)
    edge = rng.integers(0, 4, n)  # left, right, top, bottom
    across = np.where(edge % 2 == 0, beyond, image_size - beyond)
    centres = np.where((edge < 2)[:, None], np.stack([across, along], 1), np.stack([along, across], 1))
    heading = rng.uniform(0.2, 0.8, (n, 2)) * image_size - centres
    return centres, heading / np.linalg.norm(heading, axis=1, keepdims=True)


def _object_paths(rng: np.random.Generator, image_size: int, frames: int) -> list[list[Shape]]:
    """[T][n] world-space shapes of one video: sample_shapes' objects set moving."""
    start = sample_shapes(rng, image_size)
    n = len(start)
    centre = np.array([(s.cx, s.cy) for s in start])
    size = np.array([s.size for s in start])
    angle = rng.uniform(0.0, 2.0 * np.pi, n)
    heading = np.stack([np.cos(angle), np.sin(angle)], 1)
    entering = rng.random(n) < ENTERING_FRACTION
    entry_centre, entry_heading = _entry_points(rng, size, image_size)
    centre[entering], heading[entering] = entry_centre[entering], entry_heading[entering]
    speed = image_size * np.exp(rng.uniform(*np.log(SPEED_RANGE), n))
    velocity = heading * speed[:, None]
    spin = rng.uniform(-MAX_SPIN, MAX_SPIN, n)
    growth = rng.uniform(-MAX_GROWTH, MAX_GROWTH, n)
    size_bounds = np.array(SIZE_RANGE) * image_size
    world = (-WORLD_MARGIN * image_size, (1 + WORLD_MARGIN) * image_size)
    rotation = np.array([s.angle for s in start])
    paths = []
    for _ in range(frames):
        paths.append([Shape(s.class_id, float(x), float(y), float(z), s.aspect, float(a), s.detail)
                      for s, (x, y), z, a in zip(start, centre, size, rotation)])
        centre = centre + velocity + rng.normal(0.0, MOTION_NOISE * speed[:, None], (n, 2))
        _bounce(centre, velocity, *world)
        rotation = rotation + spin
        size = size * (1 + growth)
        _bounce(size, growth, *size_bounds)
        size = np.clip(size, *size_bounds)
    return paths


def simulate_scene(seed: int, video: int, image_size: int, frames: int) -> Scene:
    """Object tracks and camera path of one video; re-drawn until some object shows in the first frame."""
    rng = video_rng(seed, video, _MOTION)
    while True:
        paths = _object_paths(rng, image_size, frames)
        camera = _wander(rng, frames, CAMERA_SPEED * image_size, CAMERA_RANGE * image_size)
        drift = _wander(rng, frames, DRIFT_SPEED * image_size, DRIFT_RANGE * image_size)
        shapes = [[Shape(s.class_id, s.cx - cx, s.cy - cy, s.size, s.aspect, s.angle, s.detail) for s in frame]
                  for frame, (cx, cy) in zip(paths, camera)]
        if visible_shapes(shapes[0], image_size)[0]:
            break
    margin = math.ceil((CAMERA_RANGE + DRIFT_RANGE) * image_size) + 1
    corners = np.rint(camera + drift).astype(int) + margin
    return Scene(shapes, corners, image_size + 2 * margin)


def render_frames(seed: int, video: int, image_size: int, frames: int):
    """Frames of one video, in order: (image [S,S,3] uint8 RGB before JPEG, JPEG quality, the track ids shown
    back to front, their visible masks [k,S,S] bool, their class ids [k] int64)."""
    scene = simulate_scene(seed, video, image_size, frames)
    canvas = backdrop(video_rng(seed, video, _BACKDROP), scene.backdrop_size)
    appearance = video_rng(seed, video, _APPEARANCE)
    colours = [contrasting_colour(appearance, canvas.mean((0, 1))) for _ in scene.shapes[0]]
    for t, ((x, y), shapes) in enumerate(zip(scene.backdrop_corners, scene.shapes)):
        noise = grain(video_rng(seed, video, _NOISE, t), (image_size, image_size, 3), SENSOR_NOISE)
        frame = canvas[y:y + image_size, x:x + image_size] + noise
        tracks, drawn, masks = visible_shapes(shapes, image_size)
        for j, (_, (coverage, box)) in zip(tracks, drawn):
            paint_object(video_rng(seed, video, _APPEARANCE, j), frame, coverage, box, colours[j])
        image, quality = photograph(video_rng(seed, video, _CAMERA), frame)
        yield image, quality, tracks, masks, np.array([shapes[j].class_id for j in tracks], np.int64)


def video_name(video: int) -> str:
    """The frame folder (and MP4) name of video index `video`; sorts in video order."""
    return f"video_{video:05d}"


def _record_frame(records: dict, t: int, frames: int, tracks: list[int], masks: np.ndarray,
                  classes: np.ndarray) -> None:
    """Add frame t's visible instances to the YouTube-VIS track records (keyed by track index), in place."""
    for j, mask, class_id, (x1, y1, x2, y2) in zip(tracks, masks, classes, masks_to_boxes(masks)):
        record = records.setdefault(j, {"category_id": int(class_id) + 1, "iscrowd": 0,
                                        "segmentations": [None] * frames, "bboxes": [None] * frames,
                                        "areas": [None] * frames})
        record["segmentations"][t] = rle.encode(mask)
        record["bboxes"][t] = [int(x1), int(y1), int(x2 - x1), int(y2 - y1)]
        record["areas"][t] = int(mask.sum())


def _mp4_writer(path: Path, fps: float, image_size: int) -> cv2.VideoWriter:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (image_size, image_size))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write MP4 (mp4v) files here: {path}")
    return writer


def _write_video(job: tuple) -> tuple[dict, list[dict]]:
    """Render one video, write its JPEGs (and MP4); return its `videos` record and its track records, one per
    track shown in some frame, numbered from 1 (renumbered by the caller)."""
    out, seed, video, image_size, frames, fps, mp4 = job
    name = video_name(video)
    (out / "JPEGImages" / name).mkdir(parents=True, exist_ok=True)
    writer = _mp4_writer(out / "videos" / f"{name}.mp4", fps, image_size) if mp4 else None
    records: dict[int, dict] = {}
    file_names = [f"{name}/{t:05d}.jpg" for t in range(frames)]
    try:
        for t, (image, quality, tracks, masks, classes) in enumerate(render_frames(seed, video, image_size, frames)):
            (out / "JPEGImages" / file_names[t]).write_bytes(jpeg_bytes(image, quality))
            if writer is not None:
                writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            _record_frame(records, t, frames, tracks, masks, classes)
    finally:
        if writer is not None:
            writer.release()
    record = {"id": video + 1, "file_names": file_names, "width": image_size, "height": image_size, "length": frames}
    return record, [{"id": i + 1, **records[j]} for i, j in enumerate(sorted(records))]


def _written_videos(jobs: list[tuple], workers: int):
    """_write_video's results in video order, from this process (workers 0) or a pool of processes."""
    if workers == 0:
        yield from map(_write_video, jobs)
        return
    from multiprocessing import get_context

    with get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_write_video, jobs)


def generate_videos(out_dir, num_videos: int, frames: int, *, seed: int = 0, image_size: int = 320,
                    fps: float = 10.0, workers: int = 0, mp4: bool = False, progress: bool = True) -> Path:
    """Write out_dir/JPEGImages/<video>/<frame>.jpg and out_dir/annotations.json (YouTube-VIS); return out_dir.

    With mp4 also out_dir/videos/<video>.mp4 at fps. The same seed gives byte-identical JPEGs and JSON whatever
    the number of worker processes (0: this process).
    """
    if num_videos < 0:
        raise ValueError(f"num_videos must be >= 0, got {num_videos}")
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32, got {image_size}")
    if not 0 < fps < math.inf:
        raise ValueError(f"fps must be a positive number, got {fps}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    out = Path(out_dir)
    (out / "JPEGImages").mkdir(parents=True, exist_ok=True)
    if mp4:
        (out / "videos").mkdir(exist_ok=True)
    jobs = [(out, seed, v, image_size, frames, fps, mp4) for v in range(num_videos)]
    results = list(tqdm(_written_videos(jobs, workers), total=num_videos, desc="synthetic videos", unit="video",
                        disable=not progress))
    annotations = []
    for video, tracks in results:
        for track in tracks:
            annotations.append({**track, "id": len(annotations) + 1, "video_id": video["id"]})
    write_ytvis(out / "annotations.json", {
        "info": {"description": "yolactedge synthetic shape videos", "seed": seed, "image_size": image_size,
                 "fps": fps},
        "videos": [video for video, _ in results],
        "annotations": annotations,
        "categories": [{"id": j + 1, "name": name, "supercategory": "shape"} for j, name in enumerate(DEMO_CLASSES)],
    })
    return out
