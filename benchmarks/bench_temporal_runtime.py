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

With `--demo-videos N` (or `--video-data DIR`), a video model runs as an ONNX pair through
`Detector(keyframe_interval=k)` on N synthetic videos (or the YouTube-VIS folder DIR): per-frame mask and box AP
over all frames and over the frames interval 5 warps, for the image model (its key-frame graph on every frame),
interval 5 with YOLACT-Edge's transfer and, with `--carry-protos`, interval 5 with carried prototypes; and the
median inference ms of key and warped frames. The model is `--video-weights` (a trained video checkpoint), else
the demo's weights with an untrained flow net and SPA, whose warped frames say how much an untrained transfer
loses, not what YOLACT-Edge reaches.
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


def video_model_pairs(weights: str | None, folder: Path, carry: bool) -> dict[str, Path]:
    """The video model's ONNX pairs → {"plain": key-frame graph[, "carried": key-frame graph of the pair that
    carries prototypes]}. No weights: the demo's in its config with video=True (flow net and SPA at init)."""
    from yolactedge.model.yolact import YolactEdge

    if weights is None:
        demo = load_model("demo")
        torch.manual_seed(0)
        model = YolactEdge(demo.config.replace(video=True))
        missing, unexpected = model.load_state_dict(demo.state_dict(), strict=False)
        assert not unexpected and all(k.startswith(("flow_net", "spa")) for k in missing), missing
    else:
        model = load_model(weights, video=True)
    pairs = {"plain": folder / "video.onnx"}
    export_video_onnx(model.eval(), pairs["plain"], progress=False, carry_protos=False)
    if carry:
        pairs["carried"] = folder / "video_carried.onnx"
        export_video_onnx(model, pairs["carried"], progress=False, carry_protos=True)
    return pairs


def bench_videos(pairs: dict[str, Path], data: Path, label: str) -> None:
    """Per-frame COCO AP of the image model (the key-frame graph on every frame) and of each pair at interval 5,
    over all frames and over the frames that interval 5 warps; inference ms split by frame kind."""
    from yolactedge.data.ytvis import frames_as_coco, load_ytvis
    from yolactedge.evaluate import PROTOCOL, category_mapping, ground_truth, score_results
    from yolactedge.evaluate_video import evaluate_videos
    from yolactedge.keyframes import is_key_frame
    from yolactedge.runtime import Detector

    coco = frames_as_coco(load_ytvis(data))
    images, gt = coco["images"], ground_truth(coco)
    warped_ids = {i["id"] for i in images if not is_key_frame(i["frame_index"], INTERVAL)}
    key_of = [is_key_frame(i["frame_index"], INTERVAL) for i in images]
    runs = [("image model (every frame a key frame)", pairs["plain"], 1),
            (f"interval {INTERVAL}, YOLACT-Edge's transfer", pairs["plain"], INTERVAL)]
    if "carried" in pairs:
        runs.append((f"interval {INTERVAL}, prototypes carried (ours)", pairs["carried"], INTERVAL))
    print(f"\n{label}: {len(images)} frames of which {len(warped_ids)} warped at interval {INTERVAL}; ONNX Runtime "
          "fp32, 1 thread")
    print("| run | mask AP, all frames | mask AP, warped frames | box AP, warped frames | warped-frame mask AP / "
          "image model's | key ms | warped ms |\n|---|---|---|---|---|---|---|")
    reference = None
    for name, path, interval in runs:
        detector = Detector(path, num_threads=1, keyframe_interval=interval, **PROTOCOL)
        frames = evaluate_videos(detector, data, progress=False).frames
        cat_ids = category_mapping(detector.class_names, gt)
        on_warped = score_results(gt, [r for r in frames.results if r["image_id"] in warped_ids], sorted(warped_ids),
                                  cat_ids, detector.class_names, [], []).metrics
        reference = reference or on_warped["segm"]["AP"]
        ms = {kind: statistics.median(t for t, key in zip(frames.inference_ms, key_of)
                                      if interval == 1 or key == (kind == "key")) for kind in ("key", "warped")}
        warped_ms = f"{ms['warped']:.1f}" if interval > 1 else "-"
        print(f"| {name} | {frames.metrics['segm']['AP']:.3f} | {on_warped['segm']['AP']:.3f} "
              f"| {on_warped['bbox']['AP']:.3f} | {on_warped['segm']['AP'] / reference:.2f} | {ms['key']:.1f} "
              f"| {warped_ms} |", flush=True)


def main() -> None:
    import onnxruntime

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--presets", nargs="*", default=list(PRESETS))
    parser.add_argument("--carry-protos", action="store_true",
                        help="also time the warped frame of the pair that carries prototypes (ours)")
    parser.add_argument("--demo-videos", type=int, default=0,
                        help="also evaluate a video model on N synthetic videos (seed 7, 320x320)")
    parser.add_argument("--demo-frames", type=int, default=10)
    parser.add_argument("--video-data", help="evaluate on this YouTube-VIS folder instead (e.g. from "
                                             "yolactedge data synth-video with another seed than the training data)")
    parser.add_argument("--video-weights", help="the video checkpoint to evaluate (e.g. a --video-stage flow run's "
                                                "last.pth); default: the demo's weights with an untrained flow net")
    args = parser.parse_args()
    print(f"onnxruntime {onnxruntime.__version__}")
    if args.presets:
        print(f"\nfp32, 1 thread, 550x550, median of {args.runs} round-robin runs\n")
        carried = (f" carried ms | carried / key | carried per frame at {INTERVAL} | image / carried per frame |"
                   if args.carry_protos else "")
        print(f"| preset | image ms | key ms | warped ms | per frame at {INTERVAL} | image / per frame |{carried} "
              f"ORT vs PyTorch abs / rel |\n|{'---|' * (7 + 4 * args.carry_protos)}")
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            print(bench_preset(preset, args.runs, Path(tmp), args.carry_protos), flush=True)
        if args.demo_videos or args.video_data:
            from yolactedge.data import generate_videos

            data = Path(args.video_data) if args.video_data else generate_videos(
                Path(tmp) / "videos", args.demo_videos, args.demo_frames, seed=7, image_size=320, progress=False)
            weights = args.video_weights or "demo weights, untrained flow net"
            bench_videos(video_model_pairs(args.video_weights, Path(tmp), args.carry_protos), data,
                         f"{weights} on {data.name if args.video_data else 'synthetic videos (seed 7)'}")


if __name__ == "__main__":
    main()
