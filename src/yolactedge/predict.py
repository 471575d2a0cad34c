"""`yolactedge predict`: run a Detector over images, folders, globs, videos or a camera; save what the user asks."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .fileio import atomic_write, atomic_write_json
from .runtime import Detector, ImageError, Prediction, load_image
from .runtime.images import VIDEO_SUFFIXES, expand_sources, iter_video
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
    draw: bool = True,
    category_ids: list[int] | None = None,
    progress: bool = True,
    on_prediction: Callable[[np.ndarray, Prediction], None] | None = None,
) -> PredictReport:
    """Detect in every image or frame; unreadable files are reported and skipped, the rest still processed.

    Annotated images go to `out_dir` (videos become annotated .mp4 files); `save_json` gets a COCO results list
    whose image ids number the inputs from 1 in processing order, each result also naming its `file_name`.
    `on_prediction(image, prediction)` sees every decoded image or frame with its prediction.
    """
    from tqdm import tqdm

    report = PredictReport()
    results: list[dict] = []
    image_ids: dict[str, int] = {}
    out = Path(out_dir) if (out_dir is not None and draw) else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(desc="predict", unit="img", disable=not progress, file=sys.stderr)
    for item in expand_sources(sources):
        if isinstance(item, int) or Path(item).suffix.lower() in VIDEO_SUFFIXES:
            _predict_video(item, detector, out, report, results, image_ids, category_ids, bar, on_prediction)
            continue
        try:
            image = load_image(item)
        except ImageError as exc:
            report.failed.append(str(exc))
            bar.write(f"skipped: {exc}")
            continue
        prediction = detector(image)
        _record(item, prediction, report, results, image_ids, category_ids, bar)
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


def _record(name, prediction, report, results, image_ids, category_ids, bar) -> None:
    image_id = image_ids.setdefault(str(name), len(image_ids) + 1)
    entries = prediction.detections.to_coco_json(image_id, category_ids=category_ids)
    results.extend({**entry, "file_name": str(name)} for entry in entries)
    report.images += 1
    report.detections += len(prediction)
    report.inference_ms.append(prediction.timings["inference"])
    bar.write(f"{name}: {prediction.summary()}")


def _predict_video(source, detector, out, report, results, image_ids, category_ids, bar, on_prediction) -> None:
    writer = None
    try:
        for name, frame in iter_video(source):
            prediction = detector(frame)
            _record(name, prediction, report, results, image_ids, category_ids, bar)
            if on_prediction is not None:
                on_prediction(frame, prediction)
            if out is not None:
                canvas = draw_detections(frame, prediction.detections, detector.class_names)
                if writer is None:
                    stem = f"camera{source}" if isinstance(source, int) else Path(source).stem
                    target = _unique_path(out, stem + ".mp4", report.written)
                    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, canvas.shape[1::-1])
                    report.written.append(target)
                writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
            bar.update()
    except ImageError as exc:
        report.failed.append(str(exc))
        bar.write(f"skipped: {exc}")
    finally:
        if writer is not None:
            writer.release()


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
