"""Regenerate every figure the README shows, from scratch, on this machine; print them as tables.

1. accuracy: the demo model as .pth, .onnx and TFLite fp32 / int16x8 / int8 on the held-out synthetic set
   (500 images, seed 20261126, never used in training), COCO box and mask AP with the YOLACT protocol;
2. latency: the same files, per stage, 2 threads (bench), plus the full-size MobileNetV2 at 550 in ONNX Runtime;
3. post-processing + drawing of 100 detections at 1920x1080 (benchmarks/bench_postprocess.py).

    python benchmarks/readme_figures.py --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from yolactedge import __version__
from yolactedge.assets import DEMO_CHECKPOINT
from yolactedge.bench import benchmark, format_rows
from yolactedge.data.synthetic import generate_dataset
from yolactedge.evaluate import compare, format_compare
from yolactedge.export import export_model

VAL_SEED = 20261126
CALIB_SEED = 31337


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, yolactedge {__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--val-images", type=int, default=500)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}", flush=True)

    val = out / "val"
    if not (val / "annotations.json").is_file():
        generate_dataset(val, args.val_images, seed=VAL_SEED, image_size=320)
    calib = out / "calibration"
    if not (calib / "annotations.json").is_file():
        generate_dataset(calib, 100, seed=CALIB_SEED, image_size=320)

    files = {"pth": str(DEMO_CHECKPOINT)}
    files["onnx"] = str(export_model(DEMO_CHECKPOINT, "onnx", output=out / "demo.onnx").path)
    for precision in ("fp32", "int16x8", "int8"):
        result = export_model(DEMO_CHECKPOINT, "tflite", precision=precision, calib=calib / "images",
                              output=out / f"demo_{precision}.tflite")
        files[precision] = str(result.path)
        print(result.summary(), flush=True)

    rows = compare(list(files.values()), val / "images", val / "annotations.json", num_threads=2)
    table = format_compare(rows)
    print("\naccuracy (held-out synthetic set, COCO AP@[.5:.95]):\n" + table, flush=True)
    bench_rows = benchmark(list(files.values()), threads=[2], runs=args.runs, warmup=5, progress=False)
    print("\nlatency (2 threads, 1920x1080 input, ms):\n" + format_rows(bench_rows), flush=True)
    post = subprocess.run([sys.executable, str(Path(__file__).with_name("bench_postprocess.py")), "--runs", "20"],
                          capture_output=True, text=True, check=True).stdout
    print("\npost-processing:\n" + post, flush=True)
    (out / "figures.json").write_text(json.dumps({
        "machine": machine(),
        "accuracy": [vars(r) for r in rows],
        "latency": [r.to_dict() for r in bench_rows],
        "postprocess": post,
    }, indent=1))


if __name__ == "__main__":
    main()
