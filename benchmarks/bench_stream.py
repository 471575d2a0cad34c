"""Stream throughput: full MobileNetV2-550 int8 on a 1920x1080 video, stages one after another vs pipelined.

The goal: pipelined frames per second >= 0.9 / (median inference time), i.e. decoding, post-processing, drawing
and encoding hidden behind inference, with inference on one thread. The model is a random-weight checkpoint in
the official key layout (as `bench_convert.py` writes it) exported to int8 once and kept in --work; the video is
rendered from synthetic shape videos resized to 1920x1080. Random weights have no meaningful scores (int8 makes
them nearly all equal), so the score threshold is set just below the first frame's --detections-th best score and
at most --detections are kept per frame: post-processing then sorts through more candidates than a trained model
leaves, a load at least as heavy as the real one.

    python benchmarks/bench_stream.py                      # 60 frames, one inference thread
    python benchmarks/bench_stream.py --model my_int8.tflite --video clip.mp4
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_convert import official_layout_checkpoint  # noqa: E402
from results_file import write_results  # noqa: E402

from yolactedge.bench_video import benchmark_video, format_video_rows  # noqa: E402
from yolactedge.data.synthetic_video import render_frames  # noqa: E402
from yolactedge.runtime import Detector  # noqa: E402
from yolactedge.video_writer import VideoFileWriter  # noqa: E402


def full_model(work: Path) -> Path:
    target = work / "mobilenetv2_550_int8.tflite"
    if not target.is_file():
        checkpoint = official_layout_checkpoint("yolact_edge_mobilenetv2", work)
        subprocess.run([sys.executable, "-m", "yolactedge.cli", "export", str(checkpoint), "--format", "tflite",
                        "--precision", "int8", "--output", str(target)], check=True)
    return target


def hd_video(work: Path, frames: int) -> Path:
    target = work / "shapes_1920x1080.mp4"
    if not target.is_file():
        with VideoFileWriter(target, 25.0) as writer:
            for image, *_ in render_frames(11, 0, 540, frames):
                writer.write(cv2.resize(image, (1920, 1080), interpolation=cv2.INTER_LINEAR))
    return target


def threshold_for(model: Path, video: Path, wanted: int) -> float:
    """Just below the score of the wanted-th best detection on the first frame."""
    capture = cv2.VideoCapture(str(video))
    ok, bgr = capture.read()
    capture.release()
    scores = Detector(str(model), num_threads=1, score_threshold=0.0)(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)) \
        .detections.scores
    score = np.float32(np.sort(scores)[::-1][min(wanted, len(scores)) - 1])
    return float(np.nextafter(score, np.float32(0))) if len(scores) else 0.0  # the scores are float32


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model")
    parser.add_argument("--video")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--detections", type=int, default=20)
    parser.add_argument("--work", default="benchmarks/results/stream")
    parser.add_argument("--json-out", default="benchmarks/results/stream.json")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model = Path(args.model) if args.model else full_model(work)
    video = Path(args.video) if args.video else hd_video(work, args.frames)
    conf = threshold_for(model, video, args.detections)
    rows = benchmark_video(str(model), str(video), threads=args.threads, score_threshold=conf,
                           max_detections=args.detections)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"{cpu}; {video.name}; {model.name}; inference on {args.threads} thread(s); score threshold {conf:.4f}")
    print(format_video_rows(rows))
    sequential, pipelined = (next(r for r in rows if r.mode == m) for m in ("sequential", "pipelined"))
    ceiling = 1000 / pipelined.median_ms["inference"]
    print(f"pipelined {pipelined.fps:.2f} fps = {pipelined.fps / ceiling:.2f} x 1 / median inference "
          f"({ceiling:.2f} fps); sequential {sequential.fps:.2f} fps = {sequential.fps / ceiling:.2f} x")
    write_results(args.json_out, {"cpu": cpu, "conf": conf, "rows": [r.to_dict() for r in rows]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
