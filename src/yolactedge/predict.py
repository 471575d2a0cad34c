"""`yolactedge predict`: run a Detector over images, folders, globs, videos or a camera; save what the user asks."""
from __future__ import annotations

import json
import os
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .fileio import atomic_write, atomic_write_json
from .runtime import Detector, ImageError, Prediction, load_image
from .runtime.images import VIDEO_SUFFIXES, VideoReader, expand_sources
from .visualize import draw_detections


@dataclass
class PredictReport:
    images: int = 0
    detections: int = 0
    failed: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    inference_ms: list[float] = field(default_factory=list)


def predict(
    sources,
    detector: Detector,
    *,
    out_dir: str | os.PathLike | None = "runs/predict",
    save_json: str | os.PathLike | None = None,
    annotations: str | os.PathLike | None = None,
    draw: bool = True,
    category_ids: list[int] | None = None,
    progress: bool = True,
    on_prediction: Callable[[np.ndarray, Prediction], None] | None = None,
) -> PredictReport:
    """Detect in every image or frame; unreadable files are reported and skipped, the rest still processed.

    Annotated images go to `out_dir` (videos become annotated .mp4 files at the source's frame rate); `save_json`
    gets a COCO results list, each result also naming its `file_name`. Image ids come from `annotations` (a COCO
    JSON; matched by file name, see `ImageIds`) when given, else from the file name itself, so they do not depend
    on the order or on which other files were read. `on_prediction(image, prediction)` sees every decoded image or
    frame with its prediction.
    """
    from tqdm import tqdm

    report = PredictReport()
    results: list[dict] = []
    image_ids = ImageIds.from_annotations(annotations) if annotations is not None else ImageIds()
    out = Path(out_dir) if (out_dir is not None and draw) else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(desc="predict", unit="img", disable=not progress, file=sys.stderr)
    for item in expand_sources(sources):
        if isinstance(item, int) or Path(item).suffix.lower() in VIDEO_SUFFIXES:
            _predict_video(item, detector, out, report, results, image_ids, category_ids, bar, on_prediction)
            continue
        try:
            image_id = image_ids(item)
            image = load_image(item)
        except ImageError as exc:
            report.failed.append(str(exc))
            bar.write(f"skipped: {exc}")
            continue
        prediction = detector(image)
        _record(item, image_id, prediction, report, results, category_ids, bar)
        if on_prediction is not None:
            on_prediction(image, prediction)
        if out is not None:
            target = _unique_path(out, Path(item).stem + ".jpg", report.written)
            canvas = draw_detections(image, prediction.detections, detector.class_names)
            _write_image(target, canvas)
            report.written.append(target)
        bar.update()
    bar.close()
    if save_json is not None:
        atomic_write_json(save_json, results)
    return report


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
            image_id = zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF
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


def _record(name, image_id, prediction, report, results, category_ids, bar) -> None:
    entries = prediction.detections.to_coco_json(image_id, category_ids=category_ids)
    results.extend({**entry, "file_name": str(name)} for entry in entries)
    report.images += 1
    report.detections += len(prediction)
    report.inference_ms.append(prediction.timings["inference"])
    bar.write(f"{name}: {prediction.summary()}")


def _predict_video(source, detector, out, report, results, image_ids, category_ids, bar, on_prediction) -> None:
    writer = None
    try:
        with VideoReader(source) as video:
            for name, frame in video:
                image_id = image_ids(name)
                prediction = detector(frame)
                _record(name, image_id, prediction, report, results, category_ids, bar)
                if on_prediction is not None:
                    on_prediction(frame, prediction)
                if out is not None:
                    canvas = draw_detections(frame, prediction.detections, detector.class_names)
                    if writer is None:
                        writer = _video_writer(out, source, video.fps, canvas.shape[1::-1], report)
                    writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
                bar.update()
    except ImageError as exc:
        report.failed.append(str(exc))
        bar.write(f"skipped: {exc}")
    finally:
        if writer is not None:
            writer.release()


def _video_writer(out: Path, source, fps: float, size: tuple[int, int], report: PredictReport) -> cv2.VideoWriter:
    """An .mp4 writer at the source's own frame rate, so the annotated video plays at the speed of the original."""
    stem = f"camera{source}" if isinstance(source, int) else Path(source).stem
    target = _unique_path(out, stem + ".mp4", report.written)
    report.written.append(target)
    return cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)


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
