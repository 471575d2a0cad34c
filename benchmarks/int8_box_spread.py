"""How much the demo's int8 box AP moves with choices that should not matter: the calibration images, and where the
int8 boxes grid sits.

Two tables, both on the first --images held-out images (seed 20261126) with `yolactedge compare`'s protocol:

- the int8 export before stream equalisation calibrated on 100 renders of each of several seeds (the README's,
  31337, first): one ONNX file, one conversion per calibration set (`int8_equalise.py` pairs each of these files
  with the equalised export the exporter now writes);
- the float (fp32) file's boxes rounded to a grid of 1/255 of the image, as the int8 boxes output is, but with the
  grid shifted by a fraction of a step (0: the int8 file's own grid; scores and masks from the int8 file). Every
  such grid is as fine as the int8 output's, so the spread is how far sub-step placement alone moves box AP.

    python benchmarks/int8_box_spread.py                 # all 500 images, 7 calibration sets, 8 grid phases
    python benchmarks/int8_box_spread.py --seeds 31337,1 --phases 0,0.5 --images 100
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from readme_figures import CALIB_SEED  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def calibration_spread(seeds: list[int], images: int, val: Path, work: Path) -> list[tuple[int, float, float]]:
    """[(seed, box AP, mask AP)] of the int8 export before stream equalisation, calibrated on 100 renders of each
    seed."""
    from int8_accuracy import calibration_samples, convert

    from yolactedge.evaluate import compare
    from yolactedge.export.onnx import export_onnx, resolve_model

    onnx_path = work / "demo.onnx"
    export_onnx(resolve_model("demo", None).module, onnx_path, progress=False)
    rows = []
    for seed in seeds:
        tflite = convert(onnx_path, work, "int8", calibration_samples(RESULTS, seed), work / f"int8_{seed}.tflite")
        result = compare([str(tflite)], val / "images", val / "annotations.json", limit=images, num_threads=2,
                         progress=False)[0]
        rows.append((seed, result.box_ap, result.mask_ap))
        print(f"  calibration seed {seed}: box AP {result.box_ap:.4f}", file=sys.stderr, flush=True)
    return rows


def grid_spread(phases: list[float], images: int, val: Path) -> tuple[float, list[tuple[float, float]]]:
    """(float box AP, [(phase, box AP of the float boxes on the int8 grid shifted by phase)])."""
    from int8_box_budget import with_float_outputs

    from yolactedge.evaluate import PROTOCOL, evaluate
    from yolactedge.runtime import Detector

    def box_ap(detector) -> float:
        return evaluate(detector, val / "images", val / "annotations.json", limit=images,
                        progress=False).metrics["bbox"]["AP"]

    int8, fp32 = str(RESULTS / "demo_int8.tflite"), str(RESULTS / "demo_fp32.tflite")
    float_ap = box_ap(Detector(fp32, num_threads=2, **PROTOCOL))
    rows = []
    for phase in phases:
        detector = with_float_outputs(Detector(int8, num_threads=2, **PROTOCOL),
                                      Detector(fp32, num_threads=2, **PROTOCOL), ("boxes", "on_grid"), phase)
        rows.append((phase, box_ap(detector)))
    return float_ap, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500, help="held-out images evaluated (of 500)")
    parser.add_argument("--seeds", default=f"{CALIB_SEED},1,2,3,4,5,6", help="calibration-set seeds")
    parser.add_argument("--phases", default="0,0.125,0.25,0.375,0.5,0.625,0.75,0.875",
                        help="grid shifts, in steps of 1/255")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    phases = [float(p) for p in args.phases.split(",")]

    for path in (RESULTS / "demo_int8.tflite", RESULTS / "demo_fp32.tflite"):
        if not path.is_file():
            raise SystemExit(f"{path}: missing (python benchmarks/readme_figures.py writes the demo's files)")
    from int8_accuracy import held_out_set

    val = held_out_set(RESULTS)

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        float_ap, grid = grid_spread(phases, args.images, val)
        calibrated = calibration_spread(seeds, args.images, val, Path(tmp))

    def share(ap: float) -> str:
        return f"{100 * ap / float_ap:.2f}%"

    print(f"demo model at 320, first {args.images} held-out images; float (fp32 file) box AP {float_ap:.4f}\n")
    print("| int8 export calibrated on 100 renders of seed | box AP | % of float | mask AP |\n|---|---|---|---|")
    for seed, box, mask in calibrated:
        print(f"| {seed}{' (README)' if seed == CALIB_SEED else ''} | {box:.4f} | {share(box)} | {mask:.4f} |")
    boxes = [box for _, box, _ in calibrated]
    print(f"| mean (min to max) | {statistics.mean(boxes):.4f} | {share(statistics.mean(boxes))} "
          f"({share(min(boxes))} to {share(max(boxes))}) | |\n")
    print("| float boxes on a 1/255 grid shifted by (steps) | box AP | % of float |\n|---|---|---|")
    for phase, box in grid:
        print(f"| {phase:g}{' (the int8 file grid)' if phase == 0 else ''} | {box:.4f} | {share(box)} |")
    aps = [box for _, box in grid]
    print(f"| mean (min to max) | {statistics.mean(aps):.4f} | {share(statistics.mean(aps))} "
          f"({share(min(aps))} to {share(max(aps))}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
