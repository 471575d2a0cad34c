"""Key frames vs warped frames of the video presets in PyTorch on CPU, one thread, input 550, random weights.

    python benchmarks/bench_temporal.py [--runs 5]

A warped frame runs the backbone up to C3, the flow net, the warp and SPA instead of the full backbone; FPN
phase 2, the protonet and the head run on both. Median and min of `--runs` timed runs after one warm-up each.
"""
from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch

from yolactedge import build_model

PRESETS = ("yolact_edge_vid_mobilenetv2", "yolact_edge_vid_resnet50", "yolact_edge_vid")


def time_ms(call, runs: int) -> list[float]:
    call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, 1 thread, 550x550, median (min) of {args.runs} runs\n")
    print("| preset | key frame ms | warped frame ms | key / warped |\n|---|---|---|---|")
    for preset in PRESETS:
        model = build_model(preset)
        key_frame, current = torch.rand(2, 1, 3, 550, 550) * 255
        with torch.no_grad():
            _, memory = model.key_frame(key_frame)
            key = time_ms(partial(model.key_frame, key_frame), args.runs)
            warped = time_ms(partial(model.warped_frame, current, memory), args.runs)
        key_med, warped_med = statistics.median(key), statistics.median(warped)
        print(f"| {preset} | {key_med:.0f} ({min(key):.0f}) | {warped_med:.0f} ({min(warped):.0f}) "
              f"| {key_med / warped_med:.2f} |")


if __name__ == "__main__":
    main()
