"""`yolactedge predict`: run a Detector over images, folders, globs, videos or a camera; save what the user asks.

Videos and cameras run through `Detector.stream_frames` (decoding, inference, post-processing and drawing in
their own threads) and keep their frame order; with tracking, the images given form one sequence too.
"""
from __future__ import annotations

import json
import os
import sys
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .fileio import atomic_write, atomic_write_json
from .runtime import Detector, ImageError, Prediction, load_image
from .runtime.images import VIDEO_SUFFIXES, VideoReader, expand_sources
from .runtime.stream import pipelined
from .track.results import VideoTrackResults
from .video_writer import VideoFileWriter
from .visualize import draw_detections


@dataclass
class PredictReport:
    images: int = 0
    detections: int = 0
    failed: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    inference_ms: list[float] = field(default_factory=list)

    def failure_summary(self) -> str:
        """One line for the inputs that could not be read."""
        count = len(self.failed)
        return f"{count} input{'s' if count > 1 else ''} could not be read (first: {self.failed[0]})"


def predict(
    sources,
    detector: Detector,
    *,
    out_dir: str | os.PathLike | None = "runs/predict",
    save_json: str | os.PathLike | None = None,
    annotations: str | os.PathLike | None = None,
    draw: bool = True,
    category_ids: list[int] | None = None,
    track: bool = False,
    latest: bool = False,
    progress: bool = True,
    on_prediction: Callable[[np.ndarray, Prediction], None] | None = None,
) -> PredictReport:
    """Detect in every image or frame; unreadable files and frames are reported and skipped, the rest processed.

    Annotated images go to `out_dir` (videos become annotated .mp4 files at the source's frame rate). `save_json`
    gets a COCO results list, each result also naming its `file_name`; image ids come from `annotations` (a COCO
    JSON; matched by file name, see `ImageIds`) when given, else from the file name itself, so they do not depend
    on the order or on which other files were read. With `track`, each detection carries a track id, the images
    given form one sequence, and `save_json` gets YouTube-VIS results (one entry per track and video). `latest`
    lets a camera skip frames that arrive while the model is busy. If the run is interrupted, what was processed
    is still saved. `on_prediction(image, prediction)` sees every decoded image or frame with its prediction.
    """
    from tqdm import tqdm

    items = list(expand_sources(sources))  # a source that does not exist fails here, before any output
    image_ids = ImageIds.from_annotations(annotations) if annotations is not None else ImageIds()
    out = Path(out_dir) if (out_dir is not None and draw) else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(desc="predict", unit="img", disable=not progress, file=sys.stderr)
    run = _Run(detector, out, bar, on_prediction, category_ids, track, latest, image_ids)
    try:
        images = [item for item in items if not _is_video(item)]
        if track and images:
            run.sequence("images", images)
        for item in items:
            if _is_video(item):
                run.video(item)
            elif not track:
                run.image(item)
    finally:
        bar.close()
        if save_json is not None:
            atomic_write_json(save_json, run.track_entries if track else run.results)
    return run.report


def _is_video(item) -> bool:
    return isinstance(item, int) or Path(item).suffix.lower() in VIDEO_SUFFIXES


def stable_id(name: str) -> int:
    """A COCO / YouTube-VIS id from a file or video name alone (CRC-32, 31 bits), the same in every run."""
    return zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF


class ImageIds:
    """COCO image ids for predicted files: the dataset's id of the image with the same file name, or without a
    dataset a stable id derived from the name as given (CRC-32, 31 bits; a collision is an error, not a merge).

    A path matches a dataset `file_name` when its last components equal it ("data/images/a.jpg" matches
    "images/a.jpg" and "a.jpg"), else by base name when only one dataset image has it.
    """

    def __init__(self, by_file_name: dict[str, int] | None = None) -> None:
        self.by_file_name = by_file_name
        self._given: dict[int, str] = {}
        if by_file_name is not None:
            names = [Path(name).name for name in by_file_name]
            self._by_base = {Path(n).name: i for n, i in by_file_name.items() if names.count(Path(n).name) == 1}

    @classmethod
    def from_annotations(cls, path: str | os.PathLike) -> ImageIds:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            images = {str(Path(image["file_name"]).as_posix()): int(image["id"]) for image in data["images"]}
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such annotation file") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a COCO annotation file with images[].file_name and id ({exc})") from None
        return cls(images)

    def __call__(self, name: str) -> int:
        """The id of `name`; ImageError when the dataset has no such image."""
        if self.by_file_name is None:
            image_id = stable_id(name)
            if self._given.setdefault(image_id, name) != name:
                raise ImageError(f"{name}: its image id collides with {self._given[image_id]}'s; rename one")
            return image_id
        parts = Path(name).as_posix().split("/")
        for start in range(len(parts)):
            found = self.by_file_name.get("/".join(parts[start:]))
            if found is not None:
                return found
        if parts[-1] in self._by_base:
            return self._by_base[parts[-1]]
        raise ImageError(f"{name}: no image of that file name in the annotations")


class _Run:
    """One predict call's state: what was written, the JSON results, and how each kind of input is processed."""

    def __init__(self, detector, out, bar, on_prediction, category_ids, track, latest, image_ids) -> None:
        self.detector, self.out, self.bar, self.on_prediction = detector, out, bar, on_prediction
        self.category_ids, self.track, self.latest, self.image_ids = category_ids, track, latest, image_ids
        self.report = PredictReport()
        self.results: list[dict] = []
        self.track_entries: list[dict] = []

    def image(self, item: str) -> None:
        try:
            image_id = self.image_ids(item)
            image = load_image(item)
        except ImageError as exc:
            self._skip(str(exc))
            return
        self.detector.reset()  # a video model's video mode: an image given on its own is a key frame
        prediction = self.detector(image)
        self._record(item, image_id, image, prediction)
        if self.out is not None:
            self._save_image(item, self._draw(image, prediction))

    def sequence(self, name: str, paths: list[str]) -> None:
        """Images as the frames of one tracked sequence; a frame of another size than the first is skipped."""
        def frames():
            size = None
            for path in paths:
                try:
                    image = load_image(path)
                except ImageError as exc:
                    self._skip(str(exc))
                    continue
                size = size or image.shape[:2]
                if image.shape[:2] != size:
                    self._skip(f"{path}: {image.shape[1]}x{image.shape[0]} differs from the sequence's first "
                               f"frame ({size[1]}x{size[0]})")
                    continue
                yield path, image

        collected = VideoTrackResults()
        for frame, prediction, canvas in self._stream(frames()):
            self._record(prediction.source, self.image_ids(prediction.source), frame, prediction, collected)
            if canvas is not None:
                self._save_image(prediction.source, canvas)
        self._finish_video(name, collected)

    def video(self, source) -> None:
        try:
            reader = VideoReader(source)
        except ImageError as exc:
            self._skip(str(exc))
            return
        collected = VideoTrackResults() if self.track else None
        stem = f"camera{source}" if isinstance(source, int) else Path(source).stem
        writer = None
        if self.out is not None:
            writer = VideoFileWriter(_unique_path(self.out, stem + ".mp4", self.report.written), reader.fps)
            self.report.written.append(writer.path)
        try:
            for frame, prediction, canvas in self._stream(reader, latest=self.latest and reader.is_camera):
                self._record(prediction.source, self.image_ids(prediction.source), frame, prediction, collected)
                if writer is not None:
                    writer.write(canvas)
        except ImageError as exc:
            self._skip(str(exc))
        finally:
            reader.close()
            if writer is not None:
                writer.close()
                if writer.frames == 0:
                    self.report.written.remove(writer.path)
            for problem in reader.problems:
                self._skip(problem)
            if collected is not None:
                self._finish_video(str(source), collected)

    def _stream(self, frames: Iterable, latest: bool = False):
        """(frame, prediction, annotated frame or None) in order; drawing runs in a thread of its own."""
        def draw(pair):
            frame, prediction = pair
            return frame, prediction, self._draw(frame, prediction) if self.out is not None else None

        inner = self.detector.stream_frames(frames, track=self.track, latest=latest)
        return pipelined(inner, [("draw", draw)])

    def _save_image(self, source: str, canvas: np.ndarray) -> None:
        target = _unique_path(self.out, Path(source).stem + ".jpg", self.report.written)
        _write_image(target, canvas)
        self.report.written.append(target)

    def _draw(self, image: np.ndarray, prediction: Prediction) -> np.ndarray:
        return draw_detections(image, prediction.detections, self.detector.class_names,
                               track_ids=prediction.track_ids)

    def _record(self, name, image_id, image, prediction, collected: VideoTrackResults | None = None) -> None:
        entries = prediction.detections.to_coco_json(image_id, category_ids=self.category_ids)
        self.results.extend({**entry, "file_name": str(name)} for entry in entries)
        if collected is not None:
            collected.add(prediction.detections, prediction.track_ids)
        self.report.images += 1
        self.report.detections += len(prediction)
        self.report.inference_ms.append(prediction.timings["inference"])
        self.bar.write(f"{name}: {prediction.summary()}")
        if self.on_prediction is not None:
            self.on_prediction(image, prediction)
        self.bar.update()

    def _finish_video(self, name: str, collected: VideoTrackResults) -> None:
        if collected.frames == 0:
            return
        video_id = stable_id(name)
        entries = collected.entries(video_id, self.category_ids)
        self.track_entries.extend({**entry, "video": name} for entry in entries)

    def _skip(self, message: str) -> None:
        self.report.failed.append(message)
        self.bar.write(f"skipped: {message}", file=sys.stderr)


def _unique_path(folder: Path, name: str, taken: list[Path]) -> Path:
    """Never overwrite an output of this run when two inputs share a stem (a/x.jpg, b/x.png)."""
    target = folder / name
    stem, suffix, n = target.stem, target.suffix, 1
    while target in taken:
        target = folder / f"{stem}_{n}{suffix}"
        n += 1
    return target


def _write_image(path: Path, rgb: np.ndarray) -> None:
    ok, data = cv2.imencode(path.suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: could not encode the annotated image")
    atomic_write(path, lambda f: f.write(data.tobytes()))
