"""Our int8 TFLite against the model card recipe's, from the same ONNX: per-operator profile, latency, Vela placement.

The recipe's file is made the way the model card's recipe makes it: `onnx2tf.convert` with its published defaults
(it writes a SavedModel and float .tflite files), then `TFLiteConverter.from_saved_model` with `Optimize.DEFAULT`,
`TFLITE_BUILTINS_INT8`, int8 input and float32 output, calibrated on the same images as ours. Ours is
`yolactedge export --format tflite --precision int8`. Both are profiled operator by operator (yolactedge.opprofile),
timed whole, and compiled with Vela for the i.MX 93's Ethos-U65.

    python benchmarks/bench_lean_graph.py                       # MobileNetV2 at 550, random weights, 100 images
    python benchmarks/bench_lean_graph.py --preset yolact_edge_demo --calib-count 20 --keep DIR
    python benchmarks/bench_lean_graph.py --keep DIR --reuse    # profile the files a --keep run left in DIR again

Writes the full result to benchmarks/results/lean_graph.json (or --json-out).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from results_file import write_results  # noqa: E402
from yolactedge.model.build import randomize_batchnorm


def recipe_int8(onnx_path: Path, workdir: Path, images: np.ndarray) -> tuple[Path, dict]:
    """The model card recipe's conversion, settings as published → (int8 .tflite, stage seconds)."""
    import onnx2tf
    import tensorflow as tf

    from yolactedge.export.onnx2tf_step import preempt_sample_download

    times = {}
    preempt_sample_download(workdir)
    saved_model = workdir / "saved_model"
    start = time.perf_counter()
    with contextlib.chdir(workdir), contextlib.redirect_stdout(io.StringIO()):
        onnx2tf.convert(input_onnx_file_path=str(onnx_path), output_folder_path=str(saved_model))
    times["onnx2tf (as published)"] = time.perf_counter() - start

    def representative_dataset():
        for image in images:
            yield [image[None].astype(np.float32)]

    start = time.perf_counter()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.float32
    converter.representative_dataset = representative_dataset
    path = workdir / "recipe_int8.tflite"
    path.write_bytes(converter.convert())
    times["TFLiteConverter int8"] = time.perf_counter() - start
    return path, times


def convert_both(model, workdir: Path, calib_count: int) -> dict:
    """ONNX of `model`, then our int8 file and the recipe's from it → stage seconds."""
    from yolactedge.export import export_model
    from yolactedge.export.calibration import calibration_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_path = Path(export_model(model, "onnx", output=workdir / "model.onnx", progress=False).path)
        images, _ = calibration_dataset(None, calib_count, 1337, model.config.input_size, progress=False)
        start = time.perf_counter()
        export_model(onnx_path, "tflite", precision="int8", calib_count=calib_count,
                     output=workdir / "ours_int8.tflite", verify=False, progress=False)
        seconds = {"ours (ONNX → int8)": time.perf_counter() - start}
    _, recipe_times = recipe_int8(onnx_path, workdir, images)
    return {**seconds, **recipe_times}


def vela_placement(path: Path, workdir: Path) -> dict:
    from yolactedge.export.vela import run_vela

    summary = run_vela(path, workdir / f"vela_{path.stem}")["summary"]
    return {key: summary.get(key) for key in ("CPU operators", "NPU operators", "Estimated inference time",
                                              "Total SRAM used", "CPU operator types")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="yolact_edge_mobilenetv2")
    parser.add_argument("--calib-count", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10, help="timed runs per operator and of the whole model")
    parser.add_argument("--keep", help="keep the ONNX and both .tflite files in this folder")
    parser.add_argument("--reuse", action="store_true", help="with --keep: profile the files already there")
    parser.add_argument("--json-out", default=str(Path(__file__).parent / "results" / "lean_graph.json"))
    args = parser.parse_args(argv)

    from yolactedge import build_model
    from yolactedge.export.tflite_file import inspect_tflite
    from yolactedge.export.vela import vela_available
    from yolactedge.opprofile import (
        format_outside,
        format_side_by_side,
        profile_side_by_side,
    )

    model = build_model(args.preset)
    randomize_batchnorm(model)
    size = model.config.input_size
    with contextlib.ExitStack() as stack:
        workdir = Path(args.keep) if args.keep else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        workdir.mkdir(parents=True, exist_ok=True)
        ours, recipe = workdir / "ours_int8.tflite", workdir / "recipe_int8.tflite"
        if args.reuse:
            if not (args.keep and ours.is_file() and recipe.is_file()):
                parser.error(f"--reuse needs --keep DIR holding {ours.name} and {recipe.name}")
            conversion_s = None
        else:
            conversion_s = convert_both(model, workdir, args.calib_count)
            print(f"{args.preset} at {size}, {args.calib_count} calibration images (random weights)")
            print("conversion: " + ", ".join(f"{k} {v:.0f} s" for k, v in conversion_s.items()))

        labels = ["ours (yolactedge export)", "recipe (model card)"]
        profiles = profile_side_by_side([ours, recipe], threads=args.threads, runs=args.runs)
        print(f"\nper-operator profile, {args.threads} threads (each op run alone; 'outside' = not taken by XNNPACK)")
        print(format_side_by_side(profiles, labels))
        for profile in profiles:
            print(format_outside(profile))
        interfaces = [inspect_tflite(path, "int8") for path in (ours, recipe)]
        for label, info in zip(labels, interfaces):
            print(f"{label}: input {info['inputs'][0]['dtype']} {info['inputs'][0]['shape']}; outputs "
                  + ", ".join(f"{o['name']} {o['dtype']} {o['shape']}" for o in info["outputs"])
                  + f"; stray ops: {info['stray_ops'] or 'none'}")
        vela = None
        if vela_available():
            vela = [vela_placement(path, workdir) for path in (ours, recipe)]
            print("\nVela (Ethos-U65-256, i.MX 93)")
            for label, placement in zip(labels, vela):
                print(f"{label}: NPU operators {placement['NPU operators']}, CPU operators "
                      f"{placement['CPU operators']}, estimated {placement['Estimated inference time']}"
                      + (f"; on CPU: {placement['CPU operator types']}" if placement.get("CPU operator types") else ""))
        result = {"preset": args.preset, "input_size": size, "calib_count": args.calib_count,
                  "threads": args.threads, "conversion_s": conversion_s,
                  "profiles": dict(zip(("ours", "recipe"), (p.to_dict() for p in profiles))),
                  "interfaces": dict(zip(("ours", "recipe"), interfaces)),
                  "vela": dict(zip(("ours", "recipe"), vela)) if vela else None}
    print(f"\nwritten: {write_results(args.json_out, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
