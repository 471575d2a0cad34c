"""ONNX Runtime, fp32, one thread, 550x550: a video model's key frame and warped frame beside its image model.

    python benchmarks/bench_temporal_runtime.py [--runs 5] [--presets yolact_edge_vid_resnet50 ...]

Each preset (random weights, batch-norm statistics randomised) is exported the way `yolactedge export` does it:
the image graph (`forward`) and the video pair (key-frame graph with its memory outputs, warped-frame graph),
each checked against PyTorch (the error columns: max abs, and max relative to each output's largest magnitude,
over the key and the warped frame). The three sessions then run round-robin on two synthetic frames, so load
on the machine hits them alike; "per frame at 5" is (key + 4 warped) / 5, YOLACT-Edge's default schedule.

With `--carry-protos`, each preset is also exported as the pair that carries the key frame's prototypes to
warped frames (ours, not the original's: the protonet skipped) and its warped frame joins the round-robin: the
"carried ms" column, and "carried / key", the goal being at most 0.5 for MobileNetV2.

With `--demo-videos N`, the demo model's weights in a video model (its flow net and SPA untrained: random init)
run as an ONNX pair through `Detector(keyframe_interval=k)` on N synthetic videos: per-frame mask AP and the
median inference ms of key and warped frames, for k = 1 and 5. The flow net never saw a video, so the warped
frames' AP says how much an untrained transfer loses, not what YOLACT-Edge reaches.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from yolactedge import build_model, load_model
from yolactedge.export.onnx import check_images, export_onnx, ort_session
from yolactedge.export.onnx_video import export_video_onnx
from yolactedge.model.build import randomize_batchnorm
from yolactedge.runtime.tensors import VIDEO_MEMORY, memory_sources

PRESETS = ("yolact_edge_vid_mobilenetv2", "yolact_edge_vid_resnet50", "yolact_edge_vid")
INTERVAL = 5


def export_all(preset: str, folder: Path, carry: bool) -> tuple[Path, Path, Path, Path | None, list[dict]]:
    """→ (image graph, key-frame graph, warped-frame graph, the carried pair's warped graph or None, the pairs'
    check reports)."""
    model = randomize_batchnorm(build_model(preset)).eval()
    image_path, key_path = folder / f"{preset}_image.onnx", folder / f"{preset}.onnx"
    export_onnx(model, image_path, check=False, progress=False)
    info = export_video_onnx(model, key_path, progress=False)
    checks, carried_path = [info["check"]], None
    if carry:
        carried = export_video_onnx(model, folder / f"{preset}_carry.onnx", progress=False, carry_protos=True)
        checks.append(carried["check"])
        carried_path = carried["warped_path"]
    return image_path, key_path, info["warped_path"], carried_path, checks


def time_round_robin(calls: dict[str, callable], runs: int) -> dict[str, list[float]]:
    """One warm-up each, then `runs` rounds calling each in turn → ms per call."""
    for call in calls.values():
        call()
    times = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def bench_preset(preset: str, runs: int, folder: Path, carry: bool) -> str:
    image_path, key_path, warped_path, carried_path, checks = export_all(preset, folder, carry)
    image, key, warped = (ort_session(p, threads=1) for p in (image_path, key_path, warped_path))
    frames = [np.ascontiguousarray(f.transpose(2, 0, 1)[None]) for f in check_images(550, 2)]
    outputs = ["boxes", "scores", "masks", "proto"]
    key_outputs = dict(zip([*outputs, *VIDEO_MEMORY], key.run([*outputs, *VIDEO_MEMORY], {"input": frames[0]})))
    memory = {name: key_outputs[name] for name in VIDEO_MEMORY}
    calls = {
        "image": lambda: image.run(outputs, {"input": frames[1]}),
        "key": lambda: key.run([*outputs, *VIDEO_MEMORY], {"input": frames[1]}),
        "warped": lambda: warped.run(outputs, {"input": frames[1], **memory}),
    }
    if carried_path is not None:
        carried = ort_session(carried_path, threads=1)
        sources = memory_sources([i.name for i in carried.get_inputs()], "input", carried_path.name)
        carried_memory = {name: key_outputs[source] for name, source in sources.items()}
        calls["carried"] = lambda: carried.run(outputs, {"input": frames[1], **carried_memory})
    med = {name: statistics.median(t) for name, t in time_round_robin(calls, runs).items()}
    per_frame = (med["key"] + (INTERVAL - 1) * med["warped"]) / INTERVAL
    worst_abs = max(r["max_absolute_error"] for check in checks for r in check.values())
    worst_rel = max(r["max_relative_error"] for check in checks for r in check.values())
    row = (f"| {preset} | {med['image']:.0f} | {med['key']:.0f} | {med['warped']:.0f} | {per_frame:.0f} "
           f"| {med['image'] / per_frame:.2f} |")
    if carry:
        carried_frame = (med["key"] + (INTERVAL - 1) * med["carried"]) / INTERVAL
        row += (f" {med['carried']:.0f} | {med['carried'] / med['key']:.2f} | {carried_frame:.0f} "
                f"| {med['image'] / carried_frame:.2f} |")
    return row + f" {worst_abs:.1e} / {worst_rel:.1e} |"


def demo_video_model(folder: Path) -> Path:
    """The demo's weights in its config with video=True (flow net and SPA at init), exported → key-frame graph."""
    from yolactedge.model.yolact import YolactEdge

    demo = load_model("demo")
    model = YolactEdge(demo.config.replace(video=True))
    missing, unexpected = model.load_state_dict(demo.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("flow_net", "spa")) for k in missing), missing
    torch.manual_seed(0)
    path = folder / "demo_video.onnx"
    export_video_onnx(model.eval(), path, progress=False)
    return path


def bench_demo_videos(count: int, frames: int, folder: Path) -> None:
    from yolactedge.data import generate_videos
    from yolactedge.evaluate import PROTOCOL
    from yolactedge.evaluate_video import evaluate_videos
    from yolactedge.runtime import Detector, load_image

    key_path = demo_video_model(folder)
    data = generate_videos(folder / "videos", count, frames, seed=7, image_size=320, progress=False)
    print(f"\ndemo weights, untrained flow net, ONNX pair at 320, {count} synthetic videos x {frames} frames")
    print("| keyframe interval | frame mask AP | frame box AP | key ms | warped ms |\n|---|---|---|---|---|")
    for interval in (1, INTERVAL):
        detector = Detector(key_path, num_threads=1, keyframe_interval=interval, **PROTOCOL)
        metrics = evaluate_videos(detector, data, progress=False).frames.metrics
        paths = min((data / "JPEGImages").iterdir()).glob("*.jpg")
        timed = list(detector.stream(load_image(p) for p in sorted(paths)))
        ms = {kind: [p.timings["inference"] for p in timed if (p.frame or "key") == kind] for kind in ("key", "warped")}
        median = {kind: f"{statistics.median(v):.0f}" if v else "-" for kind, v in ms.items()}
        print(f"| {interval} | {metrics['segm']['AP']:.3f} | {metrics['bbox']['AP']:.3f} | {median['key']} "
              f"| {median['warped']} |", flush=True)


def main() -> None:
    import onnxruntime

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--presets", nargs="*", default=list(PRESETS))
    parser.add_argument("--carry-protos", action="store_true",
                        help="also time the warped frame of the pair that carries prototypes (ours)")
    parser.add_argument("--demo-videos", type=int, default=0, help="also run the demo weights on N videos")
    parser.add_argument("--demo-frames", type=int, default=10)
    args = parser.parse_args()
    print(f"onnxruntime {onnxruntime.__version__}, fp32, 1 thread, 550x550, median of {args.runs} round-robin runs\n")
    carried = (f" carried ms | carried / key | carried per frame at {INTERVAL} | image / carried per frame |"
               if args.carry_protos else "")
    columns = 7 + 4 * args.carry_protos
    print(f"| preset | image ms | key ms | warped ms | per frame at {INTERVAL} | image / per frame |{carried} "
          f"ORT vs PyTorch abs / rel |\n|{'---|' * columns}")
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            print(bench_preset(preset, args.runs, Path(tmp), args.carry_protos), flush=True)
        if args.demo_videos:
            bench_demo_videos(args.demo_videos, args.demo_frames, Path(tmp))


if __name__ == "__main__":
    main()
