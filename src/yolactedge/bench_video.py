"""`yolactedge bench --video`: frames per second of a whole video, stages one after another and pipelined.

Both modes do the same work per frame: decode, preprocess + inference, post-processing, drawing, and encoding to
an .mp4 (written to a temporary folder and deleted). Sequential runs them in turn on one thread; pipelined runs
them through `Detector.stream_frames` with drawing in a thread of its own and encoding in the caller, as
`yolactedge predict` does. Per mode: frames per second over the whole video, the median per-frame time of each
timed step, and each stage's busy time (seconds spent inside it; "inference" includes preprocessing).
"""
from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .bench import ModelRun

MODES = ("sequential", "pipelined")


@dataclass
class VideoBenchRow(ModelRun):
    mode: str
    frames: int
    fps: float
    median_ms: dict[str, float]
    busy_s: dict[str, float]
    detections_per_frame: float


def benchmark_video(model: str, video: str, *, threads: int = 1, runs: tuple[str, ...] = MODES,
                    delegate: str | None = None, **postprocess_options) -> list[VideoBenchRow]:
    """One row per mode, the modes run one after another on the same Detector (warmed up on the first frame)."""
    from .runtime import Detector
    from .runtime.images import VideoReader

    if not Path(video).is_file():
        raise FileNotFoundError(f"{video}: no such video file")
    unknown = set(runs) - set(MODES)
    if unknown:
        raise ValueError(f"unknown mode {sorted(unknown)[0]!r}; modes are {', '.join(MODES)}")
    detector = Detector(model, num_threads=threads, delegate=delegate, **postprocess_options)
    with VideoReader(video) as reader:
        _, first = next(iter(reader))
    detector(first)  # warm-up: the first call allocates
    rows = []
    for mode in runs:
        with tempfile.TemporaryDirectory() as folder:
            run = _sequential if mode == "sequential" else _pipelined
            rows.append(run(detector, video, Path(folder) / "out.mp4", model, threads))
    return rows


def _sequential(detector, video, target, model, threads) -> VideoBenchRow:
    from .runtime.images import VideoReader
    from .video_writer import VideoFileWriter
    from .visualize import draw_detections

    steps: dict[str, list[float]] = {"decode": [], "preprocess": [], "inference": [], "postprocess": [],
                                     "draw": [], "encode": []}
    detections = 0
    began = time.perf_counter()
    with VideoReader(video) as reader, VideoFileWriter(target, reader.fps) as writer:
        frames = iter(reader)
        while True:
            t0 = time.perf_counter()
            item = next(frames, None)
            if item is None:
                break
            t1 = time.perf_counter()
            prediction = detector(item[1])
            t2 = time.perf_counter()
            canvas = draw_detections(item[1], prediction.detections, detector.class_names)
            t3 = time.perf_counter()
            writer.write(canvas)
            t4 = time.perf_counter()
            for name, value in (("decode", t1 - t0), ("draw", t3 - t2), ("encode", t4 - t3)):
                steps[name].append(value * 1e3)
            for name in ("preprocess", "inference", "postprocess"):
                steps[name].append(prediction.timings[name])
            detections += len(prediction)
    wall = time.perf_counter() - began
    count = len(steps["inference"])
    busy = {name: sum(values) / 1e3 for name, values in steps.items()}
    busy["inference"] += busy.pop("preprocess")  # one stage in the pipelined mode: compare like with like
    return _row("sequential", detector, model, threads, count, wall, steps, busy, detections)


def _pipelined(detector, video, target, model, threads) -> VideoBenchRow:
    from .runtime.images import VideoReader
    from .runtime.stream import StreamStats, pipelined
    from .video_writer import VideoFileWriter
    from .visualize import draw_detections

    inner, outer = StreamStats(), StreamStats()
    steps: dict[str, list[float]] = {"preprocess": [], "inference": [], "postprocess": [], "encode": []}
    detections = 0

    def draw(pair):
        frame, prediction = pair
        return prediction, draw_detections(frame, prediction.detections, detector.class_names)

    began = time.perf_counter()
    with VideoReader(video) as reader, VideoFileWriter(target, reader.fps) as writer:
        for prediction, canvas in pipelined(detector.stream_frames(reader, stats=inner), [("draw", draw)],
                                            stats=outer):
            t0 = time.perf_counter()
            writer.write(canvas)
            steps["encode"].append((time.perf_counter() - t0) * 1e3)
            for name in ("preprocess", "inference", "postprocess"):
                steps[name].append(prediction.timings[name])
            detections += len(prediction)
    wall = time.perf_counter() - began
    busy = {"decode": inner.busy_s["source"], "inference": inner.busy_s["inference"],
            "postprocess": inner.busy_s["postprocess"], "draw": outer.busy_s["draw"],
            "encode": sum(steps["encode"]) / 1e3}
    return _row("pipelined", detector, model, threads, len(steps["inference"]), wall, steps, busy, detections)


def _row(mode, detector, model, threads, count, wall, steps, busy, detections) -> VideoBenchRow:
    return VideoBenchRow(
        mode=mode, model=str(model), backend=detector.backend.name, threads=threads, frames=count,
        fps=count / wall if wall > 0 else 0.0,
        median_ms={name: statistics.median(values) for name, values in steps.items() if values},
        busy_s={name: round(value, 3) for name, value in busy.items()},
        detections_per_frame=detections / max(count, 1),
    )


def format_video_rows(rows: list[VideoBenchRow]) -> str:
    stages = ("decode", "inference", "postprocess", "draw", "encode")
    lines = [f"{'mode':<11}{'frames':>7}{'fps':>8}{'infer ms':>10}  busy s: " + " ".join(f"{s:>11}" for s in stages)
             + f"{'dets/frame':>12}"]
    for r in rows:
        lines.append(f"{r.mode:<11}{r.frames:>7}{r.fps:>8.2f}{r.median_ms['inference']:>10.1f}          "
                     + " ".join(f"{r.busy_s.get(s, 0.0):>11.2f}" for s in stages) + f"{r.detections_per_frame:>12.1f}")
    return "\n".join(lines)
