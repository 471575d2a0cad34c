"""`yolactedge bench`: latency per stage (preprocess, inference, postprocess), per thread count, per model file.

Measured the way `benchmark_model` does it: warm-up runs, then timed runs of the same input, median / p90 / min.
Each (model, threads) pair runs in a fresh process so that its peak memory (RSS) is its own.
"""
from __future__ import annotations

import multiprocessing
import os
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

STAGES = ("preprocess", "inference", "postprocess")


@dataclass
class BenchRow:
    model: str
    backend: str
    threads: int
    size_mb: float
    input: str
    median_ms: dict[str, float]
    p90_ms: dict[str, float]
    min_ms: dict[str, float]
    peak_rss_mb: float
    detections: int

    def to_dict(self) -> dict:
        return asdict(self)


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
        if model != "demo" and not Path(model).is_file():
            raise FileNotFoundError(f"{model}: no such model file")
    rows = []
    context = multiprocessing.get_context("spawn")
    for model in models:
        for count in threads:
            with context.Pool(1) as pool:
                row = pool.apply(_bench_one, (model, count, runs, warmup, image, image_size, delegate))
            rows.append(row)
            if progress:
                print(format_rows([row], header=not rows[:-1]), flush=True)
    return rows


def _bench_one(model, threads, runs, warmup, image, image_size, delegate) -> BenchRow:
    from .assets import resolve_model_path
    from .runtime import Detector, load_image

    detector = Detector(model, num_threads=threads, delegate=delegate, score_threshold=0.05)
    frame = load_image(image) if image is not None else _scene(image_size)
    for _ in range(warmup):
        detector(frame)
    samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
    found = 0
    for _ in range(runs):
        prediction = detector(frame)
        for stage in STAGES:
            samples[stage].append(prediction.timings[stage])
        found = len(prediction)
    path = resolve_model_path(model)
    return BenchRow(
        model=str(model), backend=detector.backend.name, threads=threads,
        size_mb=path.stat().st_size / 1e6, input=f"{frame.shape[1]}x{frame.shape[0]}",
        median_ms={s: statistics.median(v) for s, v in samples.items()},
        p90_ms={s: float(np.percentile(v, 90)) for s, v in samples.items()},
        min_ms={s: min(v) for s, v in samples.items()},
        peak_rss_mb=_peak_rss_mb(), detections=found,
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
        lines.append(
            f"{Path(r.model).name[:33]:<34}{r.backend:<12}{r.threads:>4}{r.size_mb:>7.1f}  {r.median_ms['preprocess']:>6.1f}"
            f"{r.median_ms['inference']:>9.1f}{r.p90_ms['inference']:>9.1f}{r.min_ms['inference']:>9.1f}"
            f"{r.median_ms['postprocess']:>7.1f}{total:>9.1f}{r.peak_rss_mb:>8.0f}"
        )
    return "\n".join(lines)
