"""How far the int8 TFLite's decoded boxes are from the float model's, over every anchor.

Both are compared clipped to the image ([0, 1]), as post-processing uses them, on synthetic renders the
calibration did not see; the int8 output step is 1/255 of the image side.

    python benchmarks/int8_box_error.py                  # the demo model, 20 images
    python benchmarks/int8_box_error.py --model m.tflite # an existing int8 file of the demo model
"""
from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np


def box_errors(tflite_path: Path, reference: str, count: int, seed: int) -> dict:
    from yolactedge.export.calibration import synthetic_images
    from yolactedge.runtime import open_backend

    ours = open_backend(tflite_path, "litert", num_threads=2)
    theirs = open_backend(reference, "torch")
    images = synthetic_images(count, seed, ours.input_size[0], progress=False)
    errors = []
    for image in images:
        a = np.clip(ours.run(image).boxes, 0.0, 1.0)
        b = np.clip(theirs.run(image).boxes, 0.0, 1.0)
        errors.append(np.abs(a - b).max(axis=-1).ravel())
    errors = np.concatenate(errors)
    return {"images": count, "anchors": int(errors.size), "max": float(errors.max()),
            "p99.9": float(np.percentile(errors, 99.9)), "mean": float(errors.mean()),
            "max_in_steps": float(errors.max() * 255)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="an int8 .tflite of the demo model (default: export one)")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--seed", type=int, default=4242)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model
        if path is None:
            from yolactedge.export import export_model

            path = Path(tmp) / "demo_int8.tflite"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                export_model("demo", "tflite", precision="int8", output=path, verify=False, progress=False)
        print(box_errors(path, "demo", args.images, args.seed))


if __name__ == "__main__":
    main()
