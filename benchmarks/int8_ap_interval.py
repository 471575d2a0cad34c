"""How precisely one evaluation set measures the int8 file's share of float AP: a paired bootstrap over images.

The README's int8 goal compares two AP figures on the 500 held-out renders. Both files are evaluated once with
`yolactedge compare`'s protocol (the demo at 320, the README's calibration set, the export's default int8: streams
equalised); then the images are resampled with replacement --reps times, the same sample for both files, and COCO AP
is accumulated again from pycocotools' own per-image matches (`COCOeval.evalImgs`), so nothing is matched or scored
outside pycocotools (`yolactedge.evaluate.resampled_ap`, what `yolactedge compare --interval` uses). The spread of
int8 AP / float AP over the samples is what another set of 500 renders of the same kind could read.

    python benchmarks/int8_ap_interval.py                 # 500 held-out images, 300 resamples
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from int8_accuracy import calibration_samples, convert, held_out_set  # noqa: E402
from results_file import write_results  # noqa: E402

RESULTS = Path(__file__).parent / "results"
GOAL = 0.99


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500, help="held-out images evaluated (of 500)")
    parser.add_argument("--reps", type=int, default=300, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    parser.add_argument("--json-out", default=str(RESULTS / "int8_ap_interval.json"))
    args = parser.parse_args(argv)

    from tqdm import tqdm

    from yolactedge.evaluate import PROTOCOL, evaluate, resampled_ap
    from yolactedge.export.equalise import equalised_streams
    from yolactedge.export.onnx import export_onnx, resolve_model
    from yolactedge.runtime import Detector

    val = held_out_set(RESULTS)
    images = calibration_samples(RESULTS)
    evaluators, reported = {}, {}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        work = Path(tmp)
        module = resolve_model("demo", None).module
        export_onnx(module, work / "plain.onnx", progress=False)
        with equalised_streams(module, images):
            export_onnx(module, work / "equalised.onnx", progress=False)
        files = {"float": convert(work / "plain.onnx", work, "fp32", None, work / "fp32.tflite"),
                 "int8": convert(work / "equalised.onnx", work, "int8", images, work / "int8.tflite")}
        for name, path in files.items():
            result = evaluate(Detector(path, num_threads=1, **PROTOCOL), val / "images", val / "annotations.json",
                              limit=args.images, progress=False)
            evaluators[name], reported[name] = result.evaluators, result.metrics
    ratios: dict[str, list[float]] = {"bbox": [], "segm": []}
    rng = np.random.default_rng(args.seed)
    whole = {(name, kind): resampled_ap(evaluators[name][kind], np.arange(args.images))
             for name in evaluators for kind in ratios}
    for _ in tqdm(range(args.reps), desc="resamples", file=sys.stderr):
        sample = rng.integers(0, args.images, args.images)
        for kind in ratios:
            ratios[kind].append(resampled_ap(evaluators["int8"][kind], sample)
                                / resampled_ap(evaluators["float"][kind], sample))
    for (name, kind), ap in whole.items():  # the resampling's own arithmetic, on the set as it is
        if abs(ap - reported[name][kind]["AP"]) > 1e-9:
            raise SystemExit(f"{name} {kind}: AP {ap} from evalImgs, {reported[name][kind]['AP']} from COCOeval")
    point = {kind: whole["int8", kind] / whole["float", kind] for kind in ratios}
    print(f"demo model at 320, first {args.images} held-out images, README's calibration set, the export's default "
          f"int8 against fp32; {args.reps} paired bootstrap resamples of the images (seed {args.seed})")
    print(f"| AP | int8 / float on the set | 95% interval | 68% interval | resamples at >= {100 * GOAL:g}% |")
    print("|---|---|---|---|---|")
    table = {}
    for kind, label in (("bbox", "box"), ("segm", "mask")):
        values = np.array(ratios[kind])
        lo95, lo68, hi68, hi95 = np.percentile(values, [2.5, 16, 84, 97.5])
        share = float((values >= GOAL).mean())
        print(f"| {label} | {100 * point[kind]:.3f}% | {100 * lo95:.2f}% to {100 * hi95:.2f}% | "
              f"{100 * lo68:.2f}% to {100 * hi68:.2f}% | {100 * share:.0f}% |")
        table[kind] = {"ratio": point[kind], "interval_95": [lo95, hi95], "interval_68": [lo68, hi68],
                       "share_at_goal": share}
    write_results(args.json_out, {"images": args.images, "reps": args.reps, "seed": args.seed, **table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
