"""int8 TFLite, LiteRT XNNPACK, one thread: a video model's key and warped frames beside its image model.

    python benchmarks/bench_video_tflite.py [--imgsz 550] [--runs 5] [--calib-count 20] [--vela]
                                            [--presets yolact_edge_vid_mobilenetv2 ...]
    python benchmarks/bench_video_tflite.py --agreement [--calib-count 20]

Each preset (random weights in the official checkpoint layout, batch-norm statistics randomised) is exported
twice by `yolactedge.export.export_model`, int8 with its default synthetic calibration (`--calib-count` images or
frames): the image model (the same weights without the flow net and SPA) and the video pair (key-frame file and
`_warp` partner, calibrated on consecutive synthetic-video frames). Random weights make near-tie detections, so
the exports' own verification (detection agreement) is off; instead the error columns give the max abs error of
the boxes (clipped to the image), scores and mask coefficients against PyTorch float on the 5 frames of a
held-out synthetic video, as `export.verify` measures them: the image file on every frame, the key-frame file
on every frame, the warped-frame file on frames 2-5 warped from frame 1 (each runtime from its own key frame),
side by side. The three files then run
round-robin through the LiteRT backend on one synthetic frame, so load on the machine hits them alike; "key"
includes quantizing the memory for the warped file's int8 inputs (that step alone: "memory → int8 ms"), "per
frame at 5" is (key + 4 warped) / 5, YOLACT-Edge's default schedule. With --vela, Vela compiles the int8
warped-frame file for the Ethos-U65 (i.MX 93) and the operators it leaves on the CPU are listed.

With --agreement, detections instead of timing: the shipped demo and demo-video models (trained: real detections
on synthetic frames) exported int8, the image file, the key-frame file and the warped-frame file each compared with PyTorch float on the same 9 consecutive frames of a
held-out synthetic video (the warped file on frames 2-9 from frame 1's memory): `export.verify`'s errors and
detection agreement, side by side.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_convert import official_layout_checkpoint  # noqa: E402

PRESETS = ("yolact_edge_vid_mobilenetv2", "yolact_edge_vid_resnet50", "yolact_edge_vid")
INTERVAL = 5


def image_model(video_model):
    """The video model's weights in its image config (the flow net and SPA left out)."""
    from yolactedge.model.yolact import YolactEdge

    model = YolactEdge(video_model.config.replace(video=False))
    state = {k: v for k, v in video_model.state_dict().items() if not k.startswith(("flow_net", "spa"))}
    model.load_state_dict(state)
    return model.eval()


def export_pair(preset: str, size: int, calib_count: int, folder: Path):
    """→ (the float video model, the image int8 ExportResult, the video pair's)."""
    from yolactedge.export import export_model
    from yolactedge.export.onnx import resolve_model

    checkpoint = official_layout_checkpoint(preset, folder)
    video = resolve_model(str(checkpoint), size).module
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = export_model(image_model(video), "tflite", precision="int8", calib_count=calib_count,
                             output=folder / f"{preset}_image_int8.tflite", progress=False, verify=False)
        pair = export_model(video, "tflite", precision="int8", calib_count=calib_count,
                            output=folder / f"{preset}_int8.tflite", progress=False, verify=False)
    return video, image, pair


def output_errors(video, image_path: Path, key_path: Path, size: int) -> list[str]:
    """"boxes / scores / masks" max abs errors vs PyTorch of the image file, the key-frame file and the
    warped-frame file on a held-out synthetic video (see the module docstring)."""
    from yolactedge.export.calibration import synthetic_video_frames
    from yolactedge.export.verify import _warped_chain, open_model, output_errors as errors, run_model

    frames = synthetic_video_frames(5, 1338, size, group=5, progress=False)
    torch_image = open_model(image_model(video), "torch", threads=1)
    torch_video = open_model(video, "torch", threads=1)
    pairs = [
        (run_model(open_model(image_path, "litert"), frames), run_model(torch_image, frames)),
        (run_model(open_model(key_path, "litert"), frames), run_model(torch_video, frames)),
        (_warped_chain(open_model(key_path, "litert"), frames), _warped_chain(torch_video, frames)),
    ]
    cells = []
    for ours, reference in pairs:
        e = errors(ours, reference)
        cells.append(" / ".join(f"{e[name]['max_abs']:.3f}" for name in ("boxes", "scores", "masks")))
    return cells


def time_round_robin(calls: dict, runs: int) -> dict[str, float]:
    """One warm-up each, then `runs` rounds calling each in turn → median ms per call."""
    for call in calls.values():
        call()
    times = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def memory_quantize_ms(backend, frame, runs: int) -> float:
    """Median ms of quantizing a key frame's float memory outputs for the warped file's int8 inputs."""
    from yolactedge.runtime.tensors import quantize

    results = backend._runner(**{backend.input_spec.name: frame})
    plan = [(results[source], scale, zero_point, dtype) for _, source, _, _, dtype, scale, zero_point
            in backend._memory_plan]
    return time_round_robin({"quantize": lambda: [quantize(v, s, z, d) for v, s, z, d in plan]}, runs)["quantize"]


def vela_cpu_ops(warped_path: Path, folder: Path) -> str:
    from yolactedge.export.vela import npu_placement, run_vela

    report = run_vela(warped_path, folder / f"vela_{warped_path.stem}")
    placement = npu_placement(Path(report["path"]).read_bytes())
    cpu = ", ".join(f"{k} {v}" for k, v in sorted(placement["cpu_operators"].items()))
    summary = report.get("summary", {})
    return (f"NPU operators {summary.get('NPU operators', '?')}, CPU operators {summary.get('CPU operators', '?')}"
            f" ({cpu}); {placement['npu_partitions']} NPU partitions")


def bench_preset(preset: str, size: int, runs: int, calib_count: int, vela: bool, folder: Path) -> list[str]:
    from yolactedge.data.synthetic_video import render_frames
    from yolactedge.runtime.litert_backend import LiteRTBackend

    started = time.perf_counter()
    video, image, pair = export_pair(preset, size, calib_count, folder)
    export_s = time.perf_counter() - started
    image_err, key_err, warped_err = output_errors(video, image.path, pair.path, size)
    image_backend = LiteRTBackend(image.path, num_threads=1)
    video_backend = LiteRTBackend(pair.path, num_threads=1)
    video_backend.open_video()
    first, second = (video_backend.prepare(f) for f, *_ in render_frames(5, 0, size, 2))
    _, memory = video_backend.invoke_key(first)
    med = time_round_robin({
        "image": lambda: image_backend.invoke(second),
        "key": lambda: video_backend.invoke_key(second),
        "warped": lambda: video_backend.invoke_warped(second, memory),
    }, runs)
    per_frame = (med["key"] + (INTERVAL - 1) * med["warped"]) / INTERVAL
    quantize_ms = memory_quantize_ms(video_backend, first, runs)
    rows = [f"| {preset} | {size} | {med['image']:.0f} | {med['key']:.0f} | {med['warped']:.0f} "
            f"| {med['warped'] / med['key']:.2f} | {per_frame:.0f} | {per_frame / med['image']:.2f} "
            f"| {quantize_ms:.1f} "
            f"| {image_err} | {key_err} | {warped_err} "
            f"| {export_s / 60:.0f} |"]
    if vela:
        rows.append(f"  Vela (Ethos-U65) on {pair.warped_path.name}: {vela_cpu_ops(pair.warped_path, folder)}")
    return rows


def agreement(calib_count: int, folder: Path) -> None:
    from yolactedge.export import export_model
    from yolactedge.export.calibration import synthetic_video_frames
    from yolactedge.export.verify import _warped_chain, detection_agreement, open_model, output_errors, run_model

    from yolactedge import load_model

    image, video = load_model("demo").eval(), load_model("demo-video").eval()
    size = image.config.input_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image_file = export_model(image, "tflite", precision="int8", calib_count=calib_count, verify=False,
                                  output=folder / "demo_int8.tflite", progress=False).path
        key_file = export_model(video, "tflite", precision="int8", calib_count=calib_count, verify=False,
                                output=folder / "demo_video_int8.tflite", progress=False).path
    frames = synthetic_video_frames(9, 1338, size, group=9, progress=False)
    torch_image, torch_video = open_model(image, "torch", threads=1), open_model(video, "torch", threads=1)
    runs = {
        "image (every frame)": (run_model(open_model(image_file, "litert"), frames), run_model(torch_image, frames)),
        "key frame (every frame)": (run_model(open_model(key_file, "litert"), frames),
                                    run_model(torch_video, frames)),
        "warped frame (2-9 from 1)": (_warped_chain(open_model(key_file, "litert"), frames),
                                      _warped_chain(torch_video, frames)),
    }
    reports = {name: {"outputs": output_errors(ours, reference),
                      "detections": detection_agreement(ours, reference, (size, size))}
               for name, (ours, reference) in runs.items()}
    print(f"demo and demo-video at {size}, int8 vs PyTorch float, {calib_count} synthetic calibration images / "
          f"frames\n")
    print("| int8 file | boxes max abs | scores max abs | masks max abs | matched | mean box IoU | mean mask IoU |")
    print("|---|---|---|---|---|---|---|")
    for name, report in reports.items():
        out, det = report["outputs"], report["detections"]
        print(f"| {name} | {out['boxes']['max_abs']:.4f} | {out['scores']['max_abs']:.4f} "
              f"| {out['masks']['max_abs']:.3f} | {det['matched']}/{det['reference']} | {det['mean_box_iou']:.3f} "
              f"| {det['mean_mask_iou']:.3f} |", flush=True)


def main() -> None:
    from ai_edge_litert import __version__ as litert_version

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", type=int, default=550)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calib-count", type=int, default=20)  # the least a video model takes
    parser.add_argument("--vela", action="store_true")
    parser.add_argument("--presets", nargs="*", default=list(PRESETS))
    parser.add_argument("--agreement", action="store_true", help="detection agreement of the demo model instead")
    args = parser.parse_args()
    if args.agreement:
        with tempfile.TemporaryDirectory() as tmp:
            agreement(args.calib_count, Path(tmp))
        return
    print(f"ai-edge-litert {litert_version}, int8, XNNPACK, 1 thread, median of {args.runs} round-robin runs; "
          f"calibration {args.calib_count} synthetic images / video frames, errors on a held-out synthetic video\n")
    print(f"| preset | size | image ms | key ms | warped ms | warped / key | per frame at {INTERVAL} "
          "| per frame / image | memory → int8 ms | image int8 err | key int8 err | warped int8 err | export min |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("(err: boxes / scores / masks max abs error vs PyTorch float)", flush=True)
    for preset in args.presets:
        with tempfile.TemporaryDirectory() as tmp:
            for row in bench_preset(preset, args.imgsz, args.runs, args.calib_count, args.vela, Path(tmp)):
                print(row, flush=True)


if __name__ == "__main__":
    main()
