"""How far an int8 TFLite's decoded boxes are from the float model's, over every anchor.

Both are compared clipped to the image ([0, 1]), as post-processing uses them, on synthetic renders the
calibration did not see; the int8 output step is 1/255 of the image side.

    python benchmarks/int8_box_error.py                  # the demo model, 20 images
    python benchmarks/int8_box_error.py --model m.tflite # an existing int8 file of the demo model
    python benchmarks/int8_box_error.py --against-recipe # full MobileNetV2-550, random official-layout weights:
                                                         # ours (cpu and imx8mp targets) and the model card
                                                         # recipe's file against the float ONNX
    python benchmarks/int8_box_error.py --against-recipe --keep DIR --reuse   # measure the files DIR holds again

--against-recipe converts three times (about 10 minutes on 2 cores); the table goes to
benchmarks/results/int8_box_error.txt.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

CALIBRATION_SEED = 1337  # bench_lean_graph's and the exporter's default calibration seed
HELD_OUT_SEED = 4242
# imx93's file holds an Ethos-U operator that only the NPU runs; its boxes are decoded by the same graph as these.
TARGET_FILES = {"ours, --target imx8mp (= no --target)": "imx8mp.tflite", "ours, --target cpu": "cpu.tflite",
                "model card recipe": "recipe_int8.tflite"}


def box_errors(tflite_path: Path, reference, images: np.ndarray) -> dict:
    """Per anchor, the largest coordinate difference between `tflite_path` and `reference` (both clipped)."""
    from yolactedge.runtime import open_backend

    ours = open_backend(tflite_path, "litert", num_threads=2)
    theirs = open_backend(reference, "auto")
    errors = []
    for image in images:
        a = np.clip(ours.run(image).boxes, 0.0, 1.0)
        b = np.clip(theirs.run(image).boxes, 0.0, 1.0)
        errors.append(np.abs(a - b).max(axis=-1).ravel())
    errors = np.concatenate(errors)
    return {"images": len(images), "anchors": int(errors.size), "max": float(errors.max()),
            "p99.9": float(np.percentile(errors, 99.9)), "mean": float(errors.mean()),
            "over_0.02": int((errors > 0.02).sum()), "max_in_steps": float(errors.max() * 255)}


def convert_all(workdir: Path, calib_count: int) -> None:
    """Random official-layout MobileNetV2-550 → float ONNX, our int8 file per target, the recipe's int8 file."""
    from bench_convert import official_layout_checkpoint
    from bench_lean_graph import recipe_int8
    from yolactedge.export import export_model
    from yolactedge.export.calibration import calibration_dataset

    checkpoint = official_layout_checkpoint("yolact_edge_mobilenetv2", workdir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # synthetic calibration images
        onnx_path = Path(export_model(str(checkpoint), "onnx", output=workdir / "float.onnx", progress=False).path)
        for target in ("cpu", "imx8mp"):
            export_model(str(checkpoint), "tflite", precision="int8", target=target, calib_count=calib_count,
                         output=workdir / f"{target}.tflite", verify=False, progress=False)
        images, _ = calibration_dataset(None, calib_count, CALIBRATION_SEED, 550, progress=False)
    recipe_int8(onnx_path, workdir, images)


def against_recipe(args) -> None:
    from yolactedge.export.calibration import synthetic_images

    with contextlib.ExitStack() as stack:
        workdir = Path(args.keep) if args.keep else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        workdir.mkdir(parents=True, exist_ok=True)
        if not args.reuse:
            convert_all(workdir, args.calib_count)
        images = synthetic_images(args.images, args.seed, 550, progress=False)
        lines = [f"full MobileNetV2-550, random official-layout weights, {args.calib_count} calibration images "
                 f"(seed {CALIBRATION_SEED}), {args.images} held-out renders (seed {args.seed}); boxes clipped to "
                 "[0, 1] against the float ONNX, per anchor the largest coordinate difference", "",
                 "| file | anchors | max | p99.9 | mean | anchors > 0.02 |", "|---|---|---|---|---|---|"]
        for label, name in TARGET_FILES.items():
            if not (workdir / name).is_file():
                continue
            e = box_errors(workdir / name, workdir / "float.onnx", images)
            lines.append(f"| {label} | {e['anchors']} | {e['max']:.4f} | {e['p99.9']:.4f} | {e['mean']:.5f} "
                         f"| {e['over_0.02']} |")
    text = "\n".join(lines)
    print(text)
    out = Path(__file__).parent / "results" / "int8_box_error.txt"
    out.write_text(text + "\n")
    print(f"\nwritten: {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="an int8 .tflite of the demo model (default: export one)")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED)
    parser.add_argument("--against-recipe", action="store_true")
    parser.add_argument("--calib-count", type=int, default=100)
    parser.add_argument("--keep", help="with --against-recipe: keep the converted files in this folder")
    parser.add_argument("--reuse", action="store_true", help="with --keep: measure the files already there")
    args = parser.parse_args()
    if args.reuse and not args.keep:
        parser.error("--reuse needs --keep DIR")
    if args.against_recipe:
        against_recipe(args)
        return
    from yolactedge.export.calibration import synthetic_images

    with tempfile.TemporaryDirectory() as tmp:
        path = args.model
        if path is None:
            from yolactedge.export import export_model

            path = Path(tmp) / "demo_int8.tflite"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                export_model("demo", "tflite", precision="int8", output=path, verify=False, progress=False)
        from yolactedge.runtime import open_backend

        size = open_backend(path, "litert").input_size[0]
        print(box_errors(path, "demo", synthetic_images(args.images, args.seed, size, progress=False)))


if __name__ == "__main__":
    main()
