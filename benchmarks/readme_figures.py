"""Regenerate every figure the README shows, from scratch, on this machine; print them as tables.

1. float: the demo checkpoint on the whole held-out synthetic set (500 images, seed 20261126, never used in
   training), COCO box and mask AP with the YOLACT protocol (the issue's AP bar);
2. compare: the demo model as .pth, .onnx and TFLite fp32 / int8 on the first --compare-limit images of that set
   (int16x8 is exported and verified too, but LiteRT has no fast CPU kernels for it: ~seconds per image);
3. latency: the same files, per stage, 2 threads (`yolactedge bench`);
4. post-processing + drawing of 100 detections at 1920x1080 (benchmarks/bench_postprocess.py).

    python benchmarks/readme_figures.py --out benchmarks/results            # all parts, one after another
    python benchmarks/readme_figures.py --parts float                        # or some of them
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from results_file import write_results  # noqa: E402

from yolactedge import __version__
from yolactedge.assets import DEMO_CHECKPOINT
from yolactedge.bench import benchmark, format_rows
from yolactedge.data.synthetic import generate_dataset
from yolactedge.evaluate import PROTOCOL, compare, evaluate, format_compare, format_metrics
from yolactedge.export import export_model
from yolactedge.runtime import Detector

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
    parser.add_argument("--compare-limit", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parts", default="float,compare,latency,post")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
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
    figures: dict = {"machine": machine()}
    if parts & {"compare", "latency"}:
        files["onnx"] = str(export_model(DEMO_CHECKPOINT, "onnx", output=out / "demo.onnx", progress=False).path)
        for precision in ("fp32", "int16x8", "int8"):
            result = export_model(DEMO_CHECKPOINT, "tflite", precision=precision, calib=calib / "images",
                                  output=out / f"demo_{precision}.tflite", progress=False)
            files[precision] = str(result.path)
            print(result.summary(), flush=True)
    fast = [files[k] for k in ("pth", "onnx", "fp32", "int8") if k in files]
    if "float" in parts:
        detector = Detector(DEMO_CHECKPOINT, num_threads=args.threads, **PROTOCOL)
        result = evaluate(detector, val / "images", val / "annotations.json", progress=False)
        print(f"\nfloat demo model on all {result.images_evaluated} held-out images:\n{format_metrics(result)}", flush=True)
        figures["float"] = result.metrics
    if "compare" in parts:
        rows = compare(fast, val / "images", val / "annotations.json", limit=args.compare_limit,
                       num_threads=args.threads, progress=False)
        print(f"\naccuracy on the first {args.compare_limit} held-out images (COCO AP@[.5:.95]):\n"
              + format_compare(rows), flush=True)
        figures["compare"] = [vars(r) for r in rows]
    if "latency" in parts:
        bench_rows = benchmark(fast, threads=[args.threads], runs=args.runs, warmup=5, progress=False)
        print("\nlatency (1920x1080 input, ms):\n" + format_rows(bench_rows), flush=True)
        figures["latency"] = [r.to_dict() for r in bench_rows]
    if "post" in parts:
        post = subprocess.run([sys.executable, str(Path(__file__).with_name("bench_postprocess.py")), "--runs", "20"],
                              capture_output=True, text=True, check=True).stdout
        print("\npost-processing:\n" + post, flush=True)
        figures["postprocess"] = post
    write_results(out / f"figures_{'_'.join(sorted(parts))}.json", figures)

if __name__ == "__main__":
    main()
