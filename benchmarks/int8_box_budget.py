"""Where the demo model's int8 box AP goes, output by output: the int8 file with one of its outputs taken from the
float (fp32) file on the same image, the float boxes put on the int8 boxes' grid, and those with one pyramid level's
boxes taken back from the int8 file (which level's int8 boxes cost the AP).

The boxes output of an int8 file is int8 over the image ([0, 1], a step of 1/255 of the side), whatever the
network's precision: "float boxes on the int8 grid" is what a perfect int8 network would score, the ceiling of any
int8 boxes output.

    python benchmarks/int8_box_budget.py                              # all 500 held-out images
    python benchmarks/int8_box_budget.py --int8 m.tflite --float f.tflite --images 100

The files default to the README figures' (`readme_figures.py` writes them to benchmarks/results/).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
ROWS = {
    "int8 file": None,
    "int8, scores from the float file": ("scores",),
    "int8, boxes from the float file": ("boxes",),
    "int8, boxes from the float file on the int8 grid (1/255, clipped to the image)": ("boxes", "on_grid"),
}


LEVELS = ("P3", "P4", "P5", "P6", "P7")


def level_slices(input_size: int, anchors_per_cell: int = 3) -> dict[str, slice]:
    """Each pyramid level's rows of the boxes output: P3 is input/8 cells a side (rounded up), each further level
    halves it (rounded up), as the backbone's and the FPN's stride-2 convolutions do (40, 20, 10, 5, 3 at 320)."""
    slices, start, side = {}, 0, math.ceil(input_size / 8)
    for level in LEVELS:
        count = side * side * anchors_per_cell
        slices[level] = slice(start, start + count)
        start, side = start + count, math.ceil(side / 2)
    return slices


def with_float_outputs(detector, reference, taken: tuple[str, ...], grid_phase: float = 0.0,
                       int8_rows: slice | None = None):
    """`detector` whose backend returns the outputs named in `taken` from `reference`'s backend (same image);
    "on_grid" rounds the float boxes to the int8 grid shifted by `grid_phase` of a step (0: the file's grid);
    `int8_rows` keeps those anchors' boxes from the int8 file."""
    backend, reference_backend = detector.backend, reference.backend
    own_prepare, own_invoke, latest = backend.prepare, backend.invoke, {}

    def prepare(image):
        latest["tensor"] = reference_backend.prepare(image)
        return own_prepare(image)

    def invoke(tensor):
        ours, theirs = own_invoke(tensor), reference_backend.invoke(latest["tensor"])
        boxes = theirs.boxes
        if "on_grid" in taken:
            boxes = ((np.round(np.clip(boxes, 0, 1) * 255 + grid_phase) - grid_phase) / 255).astype(np.float32)
        if int8_rows is not None:
            boxes = boxes.copy()
            boxes[:, int8_rows] = ours.boxes[:, int8_rows]
        replaced = {"boxes": boxes} if "boxes" in taken else {}
        replaced |= {"scores": theirs.scores} if "scores" in taken else {}
        return ours._replace(**replaced)

    backend.prepare, backend.invoke = prepare, invoke
    return detector


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--int8", default=str(RESULTS / "demo_int8.tflite"))
    parser.add_argument("--float", default=str(RESULTS / "demo_fp32.tflite"))
    parser.add_argument("--data", default=str(RESULTS / "val"), help="COCO folder: images/ and annotations.json")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    from yolactedge.evaluate import PROTOCOL, evaluate
    from yolactedge.runtime import Detector

    data = Path(args.data)
    for path in (Path(args.int8), Path(args.float), data / "annotations.json"):
        if not path.is_file():
            raise SystemExit(f"{path}: missing (python benchmarks/readme_figures.py writes the demo's files)")

    def scored(detector):
        result = evaluate(detector, data / "images", data / "annotations.json", limit=args.images, progress=False)
        return result.metrics["bbox"]["AP"], result.metrics["segm"]["AP"]

    float_box, float_mask = scored(Detector(args.float, num_threads=args.threads, **PROTOCOL))
    print(f"demo model, first {args.images} held-out images; float: box AP {float_box:.4f}, mask AP {float_mask:.4f}")
    print("| file | box AP | % of float | mask AP | % of float |\n|---|---|---|---|---|")
    for label, taken in ROWS.items():
        detector = Detector(args.int8, num_threads=args.threads, **PROTOCOL)
        if taken:
            detector = with_float_outputs(detector, Detector(args.float, num_threads=args.threads, **PROTOCOL), taken)
        box, mask = scored(detector)
        print(f"| {label} | {box:.4f} | {100 * box / float_box:.2f}% | {mask:.4f} | {100 * mask / float_mask:.2f}% |",
              flush=True)
    size = Detector(args.int8).backend.input_size[0]
    for level, rows in level_slices(size).items():
        detector = with_float_outputs(Detector(args.int8, num_threads=args.threads, **PROTOCOL),
                                      Detector(args.float, num_threads=args.threads, **PROTOCOL),
                                      ("boxes", "on_grid"), int8_rows=rows)
        box, mask = scored(detector)
        print(f"| float boxes on the int8 grid, {level}'s from the int8 file | {box:.4f} | "
              f"{100 * box / float_box:.2f}% | {mask:.4f} | {100 * mask / float_mask:.2f}% |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
