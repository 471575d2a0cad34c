"""Do int8 ranges chosen by rounding error on the early residual streams raise the demo's int8 box AP? Paired over
calibration sets.

`int8_noise_sources.py` (its rows "stages 1-4's streams' ranges by error") found, in simulation, that the residual
streams of MobileNetV2's stages 1 to 4 (each block's 1x1 projection and each residual sum: linear, so a few outliers
set their min/max range) are better served by the range that minimises their own int8 rounding error over the
calibration set than by min/max: the box regressions of P3 and P4 gain up to 1.3 dB of SNR, P5 and P6 nothing, P7
loses. This measures what that gives on AP (--stages: the last stage given such ranges).

For each calibration set (100 renders of each --seeds seed, the README's first), the demo at 320 is exported to
int8 twice through the exporter's own steps, both with the streams equalised as `yolactedge export` does: with
min/max ranges (the default), and with those stream tensors' ranges chosen by error. The ranges are chosen on the
TFLite file's own tensors: the stream tensors are found by their shape and min/max over the calibration set, taken
from the PyTorch model, and the calibration set runs once more through LiteRT for their histograms (4096 bins);
each range is the [low * b, high * a] (a, b in 0.3..1 by 0.01) with the least squared error after int8 rounding and
clipping. Both files, and the fp32 file, are evaluated on the first --images images of the held-out set (or of
--val-seed's renders) with `yolactedge compare`'s protocol.

    python benchmarks/int8_mse_ranges.py --val-seed 777 --seeds 31337,1,2,3,4 --json-out benchmarks/results/int8_mse_ranges_val777.json
    python benchmarks/int8_mse_ranges.py                     # 7 calibration sets, all 500 held-out images
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from int8_accuracy import _patching, calibration_samples, convert, held_out_set  # noqa: E402
from readme_figures import CALIB_SEED, VAL_SEED  # noqa: E402
from results_file import write_results  # noqa: E402

RESULTS = Path(__file__).parent / "results"
BINS = 4096
FRACTIONS = np.linspace(0.3, 1.0, 71)
MATCH = 1e-3  # relative tolerance when matching a PyTorch tensor's min/max to a TFLite tensor's


def stream_ranges(module, images: np.ndarray, stages: int) -> list[tuple[tuple[int, ...], float, float]]:
    """(NHWC shape, min, max) over `images` of every residual-stream tensor of backbone stages 1..`stages`."""
    import torch

    from yolactedge.model.backbone import InvertedResidual

    seen: dict[str, list] = {}

    def record(name):
        def hook(_module, _inputs, output):
            low, high = float(output.min()), float(output.max())
            shape = (1, *output.shape[2:], output.shape[1])
            entry = seen.setdefault(name, [shape, low, high])
            entry[1], entry[2] = min(entry[1], low), max(entry[2], high)
        return hook

    handles = []
    for stage in range(1, stages + 1):
        for k, block in enumerate(module.backbone.layers[stage]):
            if isinstance(block, InvertedResidual):
                handles.append(block.conv[-1].register_forward_hook(record(f"{stage}.{k}.projection")))
                if block.use_residual:
                    handles.append(block.register_forward_hook(record(f"{stage}.{k}")))
    batch = torch.from_numpy(images).float().permute(0, 3, 1, 2)
    try:
        with torch.no_grad():
            for start in range(0, len(batch), 20):
                module(batch[start:start + 20])
    finally:
        for handle in handles:
            handle.remove()
    return [tuple(entry) for entry in seen.values()]


def least_error_range(histogram: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """The clipped range [low * b, high * a] whose int8 rounding of the histogram's values errs least."""
    centres = low + (np.arange(BINS) + 0.5) * (high - low) / BINS
    best, best_error = (low, high), np.inf
    for a in FRACTIONS:
        for b in (FRACTIONS if low < 0 else [1.0]):
            lo, hi = low * b, high * a
            step = (hi - lo) / 255
            rounded = np.round((np.clip(centres, lo, hi) - lo) / step) * step + lo
            error = float((histogram * (centres - rounded) ** 2).sum())
            if error < best_error:
                best, best_error = (lo, hi), error
    return best


@contextlib.contextmanager
def least_error_stream_ranges(targets, report: dict):
    """The exporter's calibration, with the TFLite tensors that match `targets` (from `stream_ranges`) given
    `least_error_range` instead of min/max; report["tensors"] gets {tensor index: (min/max, chosen)}."""
    from yolactedge.export import fastcalib

    original = fastcalib.collect_minmax

    def collect(model, samples, **options):
        stats = original(model, samples, **options)
        model = fastcalib.model_object(model) if isinstance(model, (bytes, bytearray)) else model
        subgraph = model.subgraphs[0]
        chosen = [index for index, (low, high) in stats.items()
                  if any(tuple(subgraph.tensors[index].shape) == shape
                         and abs(low - t_low) <= MATCH * abs(t_low) + 1e-6
                         and abs(high - t_high) <= MATCH * abs(t_high) + 1e-6 for shape, t_low, t_high in targets)]
        if len(chosen) < len(targets):
            raise SystemExit(f"found {len(chosen)} of the {len(targets)} stream tensors in the TFLite model")
        bounds = {i: (min(stats[i][0], 0.0), max(stats[i][1], 0.0)) for i in chosen}
        histograms = {i: np.zeros(BINS) for i in chosen}
        interpreter = fastcalib.tensor_reader(model, chosen, options.get("threads", 2))
        feed = interpreter.get_input_details()[0]["index"]
        for sample in samples:
            interpreter.set_tensor(feed, sample[None].astype(np.float32))
            interpreter.invoke()
            for index in chosen:
                histograms[index] += np.histogram(interpreter.tensor(index)(), BINS, bounds[index])[0]
        for index in chosen:
            stats[index] = least_error_range(histograms[index], *bounds[index])
            report.setdefault("tensors", {})[index] = (bounds[index], stats[index])
        return stats

    with _patching() as patch:
        patch(fastcalib, "collect_minmax", collect)
        yield


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default=f"{CALIB_SEED},1,2,3,4,5,6", help="calibration sets (100 renders each)")
    parser.add_argument("--images", type=int, default=500, help="images evaluated (of 500)")
    parser.add_argument("--val-seed", type=int, default=VAL_SEED,
                        help="evaluate on 500 renders of this seed (default: the README's held-out set)")
    parser.add_argument("--stages", type=int, default=4, help="choose ranges by error on stages 1 to this one")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json-out", default=str(RESULTS / "int8_mse_ranges.json"))
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]

    from yolactedge.evaluate import compare
    from yolactedge.export.equalise import equalised_streams
    from yolactedge.export.onnx import export_onnx, resolve_model

    val = held_out_set(RESULTS, args.val_seed)
    files: dict[str, Path] = {}
    shrink: dict[int, tuple[int, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        work = Path(tmp)
        module = resolve_model("demo", None).module
        export_onnx(module, work / "demo.onnx", progress=False)
        files["float"] = convert(work / "demo.onnx", work, "fp32", None, work / "fp32.tflite")
        for seed in seeds:
            images = calibration_samples(RESULTS, seed)
            with equalised_streams(module, images):
                export_onnx(module, work / f"eq{seed}.onnx", progress=False)
                targets = stream_ranges(module, images, args.stages)
            files[f"minmax {seed}"] = convert(work / f"eq{seed}.onnx", work, "int8", images,
                                              work / f"minmax{seed}.tflite")
            report: dict = {}
            with least_error_stream_ranges(targets, report):
                files[f"error {seed}"] = convert(work / f"eq{seed}.onnx", work, "int8", images,
                                                 work / f"error{seed}.tflite")
            kept = [(hi - lo) / (b_hi - b_lo) for (b_lo, b_hi), (lo, hi) in report["tensors"].values()]
            shrink[seed] = len(kept), statistics.median(kept)
        rows = compare([str(p) for p in files.values()], val / "images", val / "annotations.json",
                       limit=args.images, num_threads=args.threads, progress=False)
    ap = {label: (row.box_ap, row.mask_ap) for label, row in zip(files, rows)}
    float_box, float_mask = ap["float"]

    def share(value: float, reference: float) -> str:
        return f"{value:.4f} ({100 * value / reference:.2f}%)"

    print(f"demo model at 320, streams equalised, first {args.images} images of {val.name} (seed {args.val_seed}); "
          f"float (fp32 file) box AP {float_box:.4f}, mask AP {float_mask:.4f}; ranges by error on the streams of "
          f"stages 1-{args.stages}")
    print("| calibration seed | tensors, median share of range kept | min/max int8 box AP | by-error int8 box AP | paired gain | "
          "min/max mask AP | by-error mask AP |")
    print("|---|---|---|---|---|---|---|")
    table = []
    for seed in seeds:
        (m_box, m_mask), (e_box, e_mask) = ap[f"minmax {seed}"], ap[f"error {seed}"]
        print(f"| {seed} | {shrink[seed][0]}, {shrink[seed][1]:.2f} | {share(m_box, float_box)} | {share(e_box, float_box)} "
              f"| {e_box - m_box:+.4f} | {share(m_mask, float_mask)} | {share(e_mask, float_mask)} |")
        table.append({"seed": seed, "tensors": shrink[seed][0], "range_kept": shrink[seed][1], "minmax": [m_box, m_mask], "error": [e_box, e_mask]})
    means = {kind: [statistics.mean(r[kind][i] for r in table) for i in (0, 1)] for kind in ("minmax", "error")}
    print(f"| mean | | {share(means['minmax'][0], float_box)} | {share(means['error'][0], float_box)} "
          f"| {means['error'][0] - means['minmax'][0]:+.4f} | {share(means['minmax'][1], float_mask)} "
          f"| {share(means['error'][1], float_mask)} |")
    write_results(args.json_out, {"images": args.images, "val_seed": args.val_seed, "stages": args.stages,
                                  "float": ap["float"], "rows": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
