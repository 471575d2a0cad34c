"""`yolactedge bench`: latency per stage (preprocess, inference, postprocess), per thread count, per model file.

Measured the way `benchmark_model` does it: warm-up runs, then timed runs of the same input, median / p90 / min.
Each (model, threads) pair runs in a fresh process so that its peak memory (RSS) is its own. A video model
(a torch video model, or an ONNX or TFLite key-frame file with its `_warp` partner) gets two rows: its key frame
and its warped frame (`frame` "key" / "warped"; None for an image model).
"""
from __future__ import annotations

import multiprocessing
import os
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .assets import is_shipped_name

STAGES = ("preprocess", "inference", "postprocess")


@dataclass
class ModelRun:
    """Which file ran, on which runtime, with how many threads: the first columns of every benchmark row."""

    model: str
    backend: str
    threads: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class BenchRow(ModelRun):
    size_mb: float
    input: str
    median_ms: dict[str, float]
    p90_ms: dict[str, float]
    min_ms: dict[str, float]
    peak_rss_mb: float
    detections: int
    frame: str | None = None



def benchmark(
    models: list[str],
    *,
    threads: list[int] = (2,),
    runs: int = 50,
    warmup: int = 5,
    image: str | os.PathLike | None = None,
    image_size: tuple[int, int] = (1080, 1920),
    delegate: str | None = None,
    progress: bool = True,
) -> list[BenchRow]:
    """One row per (model, threads). `image` defaults to a synthetic scene at `image_size` (H, W)."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"--runs must be >= 1 and --warmup >= 0 (got {runs}, {warmup})")
    if any(t < 1 for t in threads):
        raise ValueError(f"thread counts must be >= 1, got {list(threads)}")
    for model in models:
        if not is_shipped_name(model) and not Path(model).is_file():
            raise FileNotFoundError(f"{model}: no such model file")
    rows = []
    context = multiprocessing.get_context("spawn")
    for model in models:
        for count in threads:
            with context.Pool(1) as pool:
                new = pool.apply(_bench_one, (model, count, runs, warmup, image, image_size, delegate))
            if progress:
                print(format_rows(new, header=not rows), flush=True)
            rows.extend(new)
    return rows


def _bench_one(model, threads, runs, warmup, image, image_size, delegate) -> list[BenchRow]:
    """The image row, or for a video model the key-frame row (every frame after a reset) and the warped-frame row
    (every frame but the first after one reset: the interval is longer than the run)."""
    from .runtime import Detector, ModelError, load_image

    options = {"num_threads": threads, "delegate": delegate, "score_threshold": 0.05}
    frame = load_image(image) if image is not None else _scene(image_size)
    try:
        detector = Detector(model, keyframe_interval=warmup + runs + 1, **options)
    except ModelError:  # an image model (any other problem is raised again below)
        detector = Detector(model, **options)
        return [_row(model, detector, frame, threads, None, _timed(detector, frame, runs, warmup, lambda: None))]
    key = _timed(detector, frame, runs, warmup, detector.reset)
    detector.reset()
    detector(frame)
    warped = _timed(detector, frame, runs, warmup, lambda: None)
    return [_row(model, detector, frame, threads, "key", key), _row(model, detector, frame, threads, "warped", warped)]


def _timed(detector, frame: np.ndarray, runs: int, warmup: int,
           before_each: Callable[[], None]) -> tuple[dict[str, list[float]], int]:
    """→ ({stage: ms per run}, detections of the last run)."""
    for _ in range(warmup):
        before_each()
        detector(frame)
    samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
    found = 0
    for _ in range(runs):
        before_each()
        prediction = detector(frame)
        for stage in STAGES:
            samples[stage].append(prediction.timings[stage])
        found = len(prediction)
    return samples, found


def _row(model, detector, frame: np.ndarray, threads: int, kind: str | None, timed) -> BenchRow:
    from .assets import resolve_model_path

    samples, found = timed
    return BenchRow(
        model=str(model), backend=detector.backend.name, threads=threads,
        size_mb=resolve_model_path(model).stat().st_size / 1e6, input=f"{frame.shape[1]}x{frame.shape[0]}",
        median_ms={s: statistics.median(v) for s, v in samples.items()},
        p90_ms={s: float(np.percentile(v, 90)) for s, v in samples.items()},
        min_ms={s: min(v) for s, v in samples.items()},
        peak_rss_mb=_peak_rss_mb(), detections=found, frame=kind,
    )


def _scene(image_size: tuple[int, int]) -> np.ndarray:
    import cv2

    from .data.synthetic import render_sample, sample_rng

    image, _, _ = render_sample(sample_rng(2026, 0), 550)
    return cv2.resize(image, image_size[::-1], interpolation=cv2.INTER_LINEAR)


def _peak_rss_mb() -> float:
    """This process's peak resident memory. On Linux from VmHWM: getrusage's ru_maxrss survives exec, so a spawned
    benchmark process would report its parent's peak (1.3 GB for every model when run from a script with
    TensorFlow loaded)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def format_rows(rows: list[BenchRow], header: bool = True) -> str:
    lines = []
    if header:
        lines.append(f"{'model':<34}{'backend':<12}{'thr':>4}{'MB':>7}  {'pre':>6}{'infer':>9}{'p90':>9}{'min':>9}"
                     f"{'post':>7}{'total':>9}{'RSS MB':>8}")
    for r in rows:
        total = sum(r.median_ms.values())
        name = Path(r.model).name + (f" [{r.frame}]" if r.frame else "")
        lines.append(
            f"{name[:33]:<34}{r.backend:<12}{r.threads:>4}{r.size_mb:>7.1f}  {r.median_ms['preprocess']:>6.1f}"
            f"{r.median_ms['inference']:>9.1f}{r.p90_ms['inference']:>9.1f}{r.min_ms['inference']:>9.1f}"
            f"{r.median_ms['postprocess']:>7.1f}{total:>9.1f}{r.peak_rss_mb:>8.0f}"
        )
    return "\n".join(lines)
