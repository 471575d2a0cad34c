"""Preprocessing of a 1920x1080 frame (resize to 550 + cast or quantize) per input kind, median of 30 runs.

    python benchmarks/bench_preprocess.py
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from yolactedge.runtime import Detector, InputSpec
from yolactedge.runtime.backend import Backend

SPECS = {
    "NCHW float32 (ONNX)": InputSpec("input", (550, 550), "NCHW", np.dtype(np.float32)),
    "NHWC float32 (TFLite fp32)": InputSpec("input", (550, 550), "NHWC", np.dtype(np.float32)),
    "NHWC int8, scale 1, zp -128 (TFLite int8)": InputSpec("input", (550, 550), "NHWC", np.dtype(np.int8), 1.0, -128),
    "NHWC uint8, other scale (lookup table)": InputSpec("input", (550, 550), "NHWC", np.dtype(np.uint8), 0.9, 3),
}


class _SpecOnly(Backend):
    def __init__(self, spec: InputSpec) -> None:
        self.input_spec = spec


def main() -> None:
    frame = np.random.default_rng(2).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    print("| input | median ms | min ms |\n|---|---|---|")
    for name, spec in SPECS.items():
        detector = Detector.__new__(Detector)
        detector.backend = _SpecOnly(spec)
        times = []
        for _ in range(30):
            start = time.perf_counter()
            detector.preprocess(frame)
            times.append((time.perf_counter() - start) * 1e3)
        print(f"| {name} | {statistics.median(times):.2f} | {min(times):.2f} |")


if __name__ == "__main__":
    main()
