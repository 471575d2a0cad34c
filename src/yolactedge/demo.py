"""`yolactedge demo`: the whole path on a fresh install, float checkpoint → cached int8 TFLite → annotated images.

With no arguments it uses the shipped demo model and sample images, builds the int8 model once (cached), and
reports detections, latency, and how closely int8 agrees with float after post-processing. Given a video model
(`--model demo-video`) it does the same on a video: the int8 key-frame / warped-frame pair (calibrated on
consecutive frames), key frames every DEMO_KEYFRAME_INTERVAL-th, on a synthetic clip made once unless `--source`
names one, with the latency of key and warped frames apart.
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
DEMO_KEYFRAME_INTERVAL = 5  # YOLACT-Edge's default schedule
CLIP_SEED, CLIP_FRAMES = 20261130, 30  # the held-out videos' seed: frames the demo video model never trained on


def cache_dir() -> Path:
    return Path(os.environ.get("YOLACTEDGE_CACHE", Path.home() / ".cache" / "yolactedge"))


def cached_int8(checkpoint: Path, *, video: bool = False, progress: bool = True) -> Path:
    """The int8 TFLite of `checkpoint` (of a video model: its key-frame file, the warped one beside it), converted
    once and reused while the checkpoint is unchanged."""
    from .data.synthetic import generate_dataset
    from .export import export_model
    from .runtime.tensors import warped_graph_path

    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:16]
    folder = cache_dir() / f"{checkpoint.stem}-{digest}-v{__version__}"
    target = folder / f"{checkpoint.stem}_int8.tflite"
    if target.is_file() and (not video or warped_graph_path(target).is_file()):
        return target
    print(f"building the int8 model once (cached in {folder}) ...", file=sys.stderr)
    if video:  # calibrated on consecutive frames of synthetic videos, the export's default for a video model
        export_model(checkpoint, "tflite", precision="int8", output=target, progress=progress)
        return target
    calib = folder / "calibration"
    if not (calib / "annotations.json").is_file():
        # The demo model was trained on synthetic scenes, so synthetic scenes are its representative data.
        generate_dataset(calib, 100, seed=31337, image_size=320, progress=progress)
    export_model(checkpoint, "tflite", precision="int8", calib=calib / "images", output=target, progress=progress)
    return target


def cached_clip(image_size: int, *, progress: bool = True) -> Path:
    """An MP4 of a synthetic video (CLIP_FRAMES frames, seed CLIP_SEED), written once."""
    from .data.synthetic_video import generate_videos, video_name

    folder = cache_dir() / f"clip-{CLIP_SEED}-{image_size}-v{__version__}"
    clip = folder / "videos" / f"{video_name(0)}.mp4"
    if not clip.is_file():
        generate_videos(folder, 1, CLIP_FRAMES, seed=CLIP_SEED, image_size=image_size, mp4=True, progress=progress)
    return clip


def run_demo(model: str = "demo", source: str | None = None, out_dir: str = "runs/demo",
             threads: int | None = None, progress: bool = True) -> dict:
    """Returns the figures it prints: detections per image, median latencies, float-vs-int8 agreement."""
    from .predict import predict
    from .runtime import Detector

    path = resolve_model_path(model)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    compare_float = path.suffix == ".pth"
    video = compare_float and is_video_checkpoint(path)
    interval = DEMO_KEYFRAME_INTERVAL if video else 1
    deploy = cached_int8(path, video=video, progress=progress) if compare_float else path
    options = {"num_threads": threads, "score_threshold": DEMO_SCORE_THRESHOLD, "keyframe_interval": interval}
    detector = Detector(deploy, **options)
    sources = [source] if source else [str(cached_clip(detector.input_size[0], progress=progress) if video
                                           else SAMPLES_DIR)]
    schedule = f", a key frame every {interval} frames" if video else ""
    print(f"model: {deploy} ({detector.backend.name}, input {detector.input_size[1]}x{detector.input_size[0]}"
          f"{schedule})")
    reference = Detector(path, **options) if compare_float else None
    total, float_ms = Agreement(0, 0, 0, float("nan"), float("nan")), []
    frame_ms: dict[str, list[float]] = {"key": [], "warped": []}

    def observe(image, prediction) -> None:
        nonlocal total
        if prediction.frame is not None:
            frame_ms[prediction.frame].append(prediction.timings["inference"])
        if reference is not None:
            if prediction.frame == "key":
                reference.reset()  # the float model keeps the int8 model's schedule, across videos too
            expected = reference(image)
            float_ms.append(expected.timings["inference"])
            total = total.merge(agreement(expected.detections, prediction.detections))

    report = predict(sources, detector, out_dir=out_dir, progress=progress, on_prediction=observe)
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
    if frame_ms["key"] and frame_ms["warped"]:
        summary["key_ms"], summary["warped_ms"] = (statistics.median(frame_ms[k]) for k in ("key", "warped"))
        print(f"video mode: int8 key frames {summary['key_ms']:.1f} ms, warped frames {summary['warped_ms']:.1f} ms "
              f"(median of {len(frame_ms['key'])} and {len(frame_ms['warped'])})")
    print(f"annotated images: {out_dir}")
    if report.failed:
        raise ValueError(report.failure_summary())
    return summary


def is_video_checkpoint(path: Path) -> bool:
    """Whether a checkpoint holds a video model: its sidecar's config, else the one its keys imply."""
    from .model.checkpoint import infer_config, read_sidecar, read_state_dict

    return (read_sidecar(path) or infer_config(read_state_dict(path))).video


def format_agreement(result: Agreement) -> str:
    return (f"int8 vs float: {result.matched}/{result.reference} float detections reproduced "
            f"({result.recall:.0%}; int8 found {result.candidate}), mean box IoU {result.mean_box_iou:.3f}, "
            f"mean mask IoU {result.mean_mask_iou:.3f}")
