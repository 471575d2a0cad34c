"""`yolactedge demo`: the whole path on a fresh install, float checkpoint → cached int8 TFLite → annotated images.

With no arguments it uses the shipped demo model and sample images, builds the int8 model once (cached), and
reports detections, latency, and how closely int8 agrees with float after post-processing.
"""
from __future__ import annotations

import hashlib
import os
import statistics
import sys
from pathlib import Path

from . import __version__
from .agreement import Agreement, agreement
from .assets import SAMPLES_DIR, resolve_model_path

DEMO_SCORE_THRESHOLD = 0.3


def cache_dir() -> Path:
    return Path(os.environ.get("YOLACTEDGE_CACHE", Path.home() / ".cache" / "yolactedge"))


def cached_int8(checkpoint: Path, *, progress: bool = True) -> Path:
    """The int8 TFLite of `checkpoint`, converted once and reused while the checkpoint is unchanged."""
    from .data.synthetic import generate_dataset
    from .export import export_model

    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:16]
    folder = cache_dir() / f"{checkpoint.stem}-{digest}-v{__version__}"
    target = folder / f"{checkpoint.stem}_int8.tflite"
    if target.is_file():
        return target
    print(f"building the int8 model once (cached in {folder}) ...", file=sys.stderr)
    calib = folder / "calibration"
    if not (calib / "annotations.json").is_file():
        # The demo model was trained on synthetic scenes, so synthetic scenes are its representative data.
        generate_dataset(calib, 100, seed=31337, image_size=320, progress=progress)
    export_model(checkpoint, "tflite", precision="int8", calib=calib / "images", output=target, progress=progress)
    return target


def run_demo(model: str = "demo", source: str | None = None, out_dir: str = "runs/demo",
             threads: int | None = None, progress: bool = True) -> dict:
    """Returns the figures it prints: detections per image, median latencies, float-vs-int8 agreement."""
    from .predict import predict
    from .runtime import Detector

    path = resolve_model_path(model)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    sources = [source] if source else [str(SAMPLES_DIR)]
    deploy = cached_int8(path, progress=progress) if path.suffix == ".pth" else path
    detector = Detector(deploy, num_threads=threads, score_threshold=DEMO_SCORE_THRESHOLD)
    print(f"model: {deploy} ({detector.backend.name}, input {detector.input_size[1]}x{detector.input_size[0]})")
    compare_float = path.suffix == ".pth"
    reference = Detector(path, num_threads=threads, score_threshold=DEMO_SCORE_THRESHOLD) if compare_float else None
    total, float_ms = Agreement(0, 0, 0, float("nan"), float("nan")), []

    def against_float(image, prediction) -> None:
        nonlocal total
        expected = reference(image)
        float_ms.append(expected.timings["inference"])
        total = total.merge(agreement(expected.detections, prediction.detections))

    report = predict(sources, detector, out_dir=out_dir, progress=progress,
                     on_prediction=against_float if compare_float else None)
    if not report.images:
        raise ValueError(f"no image could be read (first: {report.failed[0]})" if report.failed else "no images found")
    summary = {"images": report.images, "detections": report.detections,
               "int8_inference_ms": statistics.median(report.inference_ms)}
    if float_ms:
        summary["float_inference_ms"] = statistics.median(float_ms)
        summary["agreement"] = total
        print(format_agreement(total))
    print(f"latency: int8 {summary['int8_inference_ms']:.1f} ms"
          + (f", float (PyTorch) {summary['float_inference_ms']:.1f} ms" if "float_inference_ms" in summary else "")
          + " per image (median)")
    print(f"annotated images: {out_dir}")
    if report.failed:
        raise ValueError(f"{len(report.failed)} inputs could not be read (first: {report.failed[0]})")
    return summary


def format_agreement(result: Agreement) -> str:
    return (f"int8 vs float: {result.matched}/{result.reference} float detections reproduced "
            f"({result.recall:.0%}; int8 found {result.candidate}), mean box IoU {result.mean_box_iou:.3f}, "
            f"mean mask IoU {result.mean_mask_iou:.3f}")
