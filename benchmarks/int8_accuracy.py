"""Where the demo model's int8 box AP goes, and what brings it back: the table of docs/int8-accuracy.md.

All files come from one ONNX → Keras conversion of the demo model at 320 and one calibration (the README
figures' 100 calibration renders, seed 31337), and are evaluated on the first --images held-out images (seed
20261126) with `yolactedge compare`'s protocol. Rows:

- float: the fp32 TFLite file;
- int8 before: the decode as it was (one decode over all anchors) without exact anchor constants;
- the same int8 file requantized with one group of operators left in float (TensorFlow's `denylisted_nodes`):
  which group's quantization costs the box AP;
- per-level decode, then per-level decode with the anchor centres on their exact grid (the export's default);
- the default with the decode's calibration ranges propagated from the regressions' (what int16x8 uses);
- the default with only the size chain's ranges widened to what the regressions allow (`widened`);
- the default with every range at the 0.01% / 99.99% percentiles of the calibration values (`percentile`);
- the default calibrated on 300 images instead of 100 (`calib300`);
- the default with each level's box regressions decoded before any concatenation, so that each level's box
  convolution gets its own int8 range instead of sharing the concatenation's (`regressions-per-level`);
- the default with the two corners of a level added to the anchor centres apart, so that each of (offset - half
  size) and (offset + half size) gets its own range, half the shared one (`split-corners`);
- the default with MobileNetV2's residual streams equalised on the calibration set first (`equalised`), as
  `yolactedge export` does since (`yolactedge.export.equalise`; paired over calibration sets:
  `int8_equalise.py`);
- `yolactedge export --target cpu` on the same calibration renders (`cpu`): the CPU graph, whose box decode runs
  in float (`yolactedge.export.box_decode`), so its boxes are not on the int8 output's 1/255 grid.

--calib-seed calibrates every int8 row on 100 renders of another seed (the README's, 31337, by default): the
decode variants' gains are smaller than what the calibration set alone moves (`int8_box_spread.py`), so compare
them paired, seed by seed.

Whole-model int8 time (LiteRT, --threads, interleaved runs: before, per-level, default in turn) is given as a
ratio to "int8 before"; the float-group rows are diagnostics and are not timed.

    python benchmarks/int8_accuracy.py                  # 100 images, as the table
    python benchmarks/int8_accuracy.py --images 500 --rows float,default,before
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import sys
import tempfile
import warnings
from pathlib import Path


sys.path.insert(0, str(Path(__file__).parent))
from readme_figures import CALIB_SEED, VAL_SEED  # noqa: E402
from results_file import write_results  # noqa: E402

# Operator groups of the "int8 before" graph, by operator index in the calibrated model (onnx2tf's order for the
# demo model at 320; `check_groups` refuses a graph where they are not the operators named here).
FLOAT_GROUPS = {
    "backbone": list(range(66)),
    "FPN": [66, 67, 68, 69, 70, 71, 96, 97, 98, 99, 100, 115],
    "box convolutions": [73, 81, 89, 102, 117, 74, 82, 90, 103, 118, 119],
    "box decode": [128, 129, 130, 131, 134, 135, 136, 137, 138, 139, 140],
    "box decode: centres": [134, 135, 136, 137],
    "box decode: sizes": [128, 129, 130, 131],
}
EXPECTED = {73: "convolution_55/", 117: "convolution_52/", 119: "tf.concat/", 130: "tf.math.exp/", 137: "add_104/",
            140: "PartitionedCall:0", 65: "add_69/", 115: "convolution_36/"}


def calibration_samples(data: Path, seed: int = CALIB_SEED, size: int = 320):
    """The 100 calibration renders of `seed` at `size` as calibration images, rendered into `data` when absent: the
    README's set in calibration/, another seed's in calibration_seed<seed>/ (another size: _<size> appended)."""
    from yolactedge.export.calibration import load_calibration_images

    return load_calibration_images(calibration_folder(data, seed, size), 100, 1337, size, progress=False)[0]


def calibration_folder(data: Path, seed: int = CALIB_SEED, size: int = 320) -> Path:
    """The folder of `calibration_samples`' renders (rendered when absent), for `yolactedge export --calib`."""
    from yolactedge.data.synthetic import generate_dataset

    folder = data / (("calibration" if seed == CALIB_SEED else f"calibration_seed{seed}") + _size_suffix(size))
    if not (folder / "annotations.json").is_file():
        generate_dataset(folder, 100, seed=seed, image_size=size)
    return folder / "images"


def held_out_set(data: Path, seed: int = VAL_SEED, size: int = 320) -> Path:
    """500 renders of `seed` at `size`, rendered into `data` when absent: the README figures' held-out set in val/,
    another seed's in val_seed<seed>/ (another size: _<size> appended)."""
    from yolactedge.data.synthetic import generate_dataset

    val = data / (("val" if seed == VAL_SEED else f"val_seed{seed}") + _size_suffix(size))
    if not (val / "annotations.json").is_file():
        generate_dataset(val, 500, seed=seed, image_size=size)
    return val


def _size_suffix(size: int) -> str:
    return "" if size == 320 else f"_{size}"


def check_groups(names: list[str]) -> None:
    wrong = {k: names[k] if k < len(names) else None for k, part in EXPECTED.items()
             if k >= len(names) or part not in names[k]}
    if wrong:
        raise SystemExit(f"the int8 graph's operators moved (index: name {wrong}); update FLOAT_GROUPS")


def whole_decode(loc, priors, level_counts=None):
    """The decode before this work: centres and half sizes over all anchors at once, centres added first."""
    import torch

    from yolactedge.model.priors import VARIANCES

    centres = priors[:, :2] + loc[..., :2] * VARIANCES[0] * priors[:, 2:]
    half_sizes = priors[:, 2:] * torch.exp(loc[..., 2:] * VARIANCES[1]) / 2
    return torch.cat((centres - half_sizes, centres + half_sizes), dim=-1)


@contextlib.contextmanager
def old_export(*, whole: bool, inexact: bool):
    """The export with the old decode over all anchors (`whole`) and/or with the anchor constants left where
    TensorFlow's quantizer puts them (`inexact`)."""
    from yolactedge.export import converter
    from yolactedge.model import yolact

    with contextlib.ExitStack() as stack:
        patch = stack.enter_context(_patching())
        if whole:
            patch(yolact, "decode_boxes", whole_decode)
        if inexact:
            patch(converter, "store_exact_constants", lambda data, float_model: (data, 0))
        yield


@contextlib.contextmanager
def propagated_decode_ranges():
    """int8 calibrated with the box decode's ranges by interval arithmetic, as int16x8 is (see box_ranges)."""
    from yolactedge.export import fastcalib

    with _patching() as patch:
        original = fastcalib.box_ranges
        patch(fastcalib, "box_ranges", lambda model, stats, boxes, propagate: original(model, stats, boxes,
                                                                                      propagate=True))
        yield


@contextlib.contextmanager
def widened_size_ranges():
    """int8 with the box decode's size chain (EXP in and out, the half sizes, offset ± half size, their
    concatenation) calibrated on the union of its min/max and the range the regressions allow: what keeps P7's
    offset + half size, calibrated on its few anchors, from saturating on held-out boxes."""
    from yolactedge.export import fastcalib
    from yolactedge.opprofile import op_type_name

    def size_chain(model) -> set[int]:
        subgraph = model.subgraphs[0]
        consumers: dict[int, list] = {}
        for op in subgraph.operators:
            for i in op.inputs:
                consumers.setdefault(int(i), []).append(op)
        chain: set[int] = set()
        for op in subgraph.operators:
            if op_type_name(model, op) != "EXP":
                continue
            frontier = [int(op.outputs[0])]
            chain |= {int(op.inputs[0]), frontier[0]}
            for _ in range(3):  # half size, offset ± half size, their concatenation
                frontier = [int(c.outputs[0]) for t in frontier for c in consumers.get(t, [])
                            if op_type_name(model, c) in ("MUL", "ADD", "SUB", "CONCATENATION")]
                chain |= set(frontier)
        return chain

    with _patching() as patch:
        original = fastcalib.box_ranges

        def widened(model, stats, boxes, propagate):
            calibrated = original(model, stats, boxes, propagate=False)
            allowed = original(model, stats, boxes, propagate=True)
            for t in size_chain(model) & calibrated.keys() & allowed.keys():
                (a, b), (c, d) = calibrated[t], allowed[t]
                calibrated[t] = (min(a, c), max(b, d))
            return calibrated
        patch(fastcalib, "box_ranges", widened)
        yield


@contextlib.contextmanager
def regressions_per_level():
    """The export with each level's box regressions decoded on their own, never concatenated (in int8 a
    concatenation gives its inputs one scale: the widest level's)."""
    import torch

    from yolactedge.model import yolact
    from yolactedge.model.protonet import prototypes

    def predict(self, pyramid, proto=None):
        head = self.prediction_layers[0]
        loc, conf, coef = zip(*(head(p) for p in pyramid))
        priors = self.priors_for(pyramid).to(pyramid[0].device)
        proto = prototypes(self.proto_net, pyramid[0]) if proto is None else proto
        return pyramid, loc, torch.cat(conf, dim=1), torch.cat(coef, dim=1), priors, proto

    def outputs(features):
        pyramid, loc, conf, coef, priors, proto = features
        scores = torch.softmax(conf, dim=-1)[..., 1:].transpose(1, 2)
        levels = zip(loc, priors.split([part.shape[1] for part in loc], dim=0))
        return torch.cat([yolact._decode_level(*level) for level in levels], dim=1), scores, coef, proto

    with _patching() as patch:
        patch(yolact.YolactEdge, "_predict", predict)
        patch(yolact.YolactEdge, "_outputs", staticmethod(outputs))
        yield


@contextlib.contextmanager
def split_corners():
    """The export with each level's top-left and bottom-right corners added to the anchor centres apart, and
    every concatenation under the boxes output calibrated to the image (the corners' ADDs write them)."""
    import torch

    from yolactedge.export import box_ranges
    from yolactedge.model import yolact
    from yolactedge.model.priors import VARIANCES
    from yolactedge.opprofile import op_type_name

    def decode_level(loc, priors):
        shifts = loc[..., :2] * (VARIANCES[0] * priors[:, 2:])
        half_sizes = torch.exp(loc[..., 2:] * VARIANCES[1]) * (priors[:, 2:] / 2)
        return torch.cat(((shifts - half_sizes) + priors[:, :2], (shifts + half_sizes) + priors[:, :2]), dim=-1)

    def level_boxes(model, boxes):
        found, frontier = [boxes], [boxes]
        while frontier:
            tensor = frontier.pop()
            for op in model.subgraphs[0].operators:
                if tensor in op.outputs and op_type_name(model, op) == "CONCATENATION":
                    found += [int(i) for i in op.inputs]
                    frontier += [int(i) for i in op.inputs]
        return found

    with _patching() as patch:
        patch(yolact, "_decode_level", decode_level)
        patch(box_ranges, "_level_boxes", level_boxes)
        yield


@contextlib.contextmanager
def percentile_ranges(fraction: float):
    """int8 calibrated on percentile ranges: every tensor's range leaves out its `fraction` most extreme values
    at each end over the calibration images (instead of min/max); the decoded boxes keep `box_ranges`'."""
    import math

    import numpy as np

    from yolactedge.export import fastcalib

    def collect(model, samples, **options):
        model = fastcalib.model_object(model) if isinstance(model, (bytes, bytearray)) else model
        indices = fastcalib.loggable_tensors(model)
        interpreter = fastcalib.tensor_reader(model, indices, options.get("threads", 2))
        feed = interpreter.get_input_details()[0]["index"]
        lows: dict[int, np.ndarray] = {}
        highs: dict[int, np.ndarray] = {}
        for sample in samples:
            interpreter.set_tensor(feed, sample[None].astype(np.float32))
            interpreter.invoke()
            for index in indices:
                values = interpreter.tensor(index)().ravel()
                k = max(1, math.ceil(fraction * values.size * len(samples)))
                low = np.concatenate([lows.get(index, values[:0]), np.partition(values, k - 1)[:k]
                                      if k < values.size else values])
                high = np.concatenate([highs.get(index, values[:0]), np.partition(values, -k)[-k:]
                                       if k < values.size else values])
                lows[index] = np.partition(low, k - 1)[:k] if k < low.size else low
                highs[index] = np.partition(high, -k)[-k:] if k < high.size else high
        return {i: (float(lows[i].max()), float(highs[i].min())) for i in indices}

    with _patching() as patch:
        patch(fastcalib, "collect_minmax", collect)
        yield


@contextlib.contextmanager
def _patching():
    saved = []

    def patch(owner, name, value):
        saved.append((owner, name, inspect.getattr_static(owner, name)))  # a staticmethod stays one
        setattr(owner, name, value)

    try:
        yield patch
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)


def convert(onnx_path: Path, workdir: Path, precision: str, images, out: Path, capture: dict | None = None,
            size: int | None = None) -> Path:
    """ONNX → TFLite through the exporter's own steps; `capture` gets the calibrated float model."""
    from yolactedge.export import fastcalib
    from yolactedge.export.converter import keras_to_tflite
    from yolactedge.export.onnx2tf_step import onnx_to_keras, release_tf
    from yolactedge.export.tflite_file import embed_metadata
    from yolactedge.export.onnx import resolve_model
    from yolactedge.modelmeta import model_metadata

    (workdir / f"k_{out.stem}").mkdir()
    keras = onnx_to_keras(onnx_path, workdir / f"k_{out.stem}", simplified=True)
    with contextlib.ExitStack() as stack:
        if capture is not None:
            patch = stack.enter_context(_patching())
            original = fastcalib.write_minmax

            def write_minmax(model, stats):
                capture["calibrated"] = original(model, stats)
                return capture["calibrated"]
            patch(fastcalib, "write_minmax", write_minmax)
        data = keras_to_tflite(keras, precision, images, progress=False)
    release_tf()
    config = resolve_model("demo", size).config
    out.write_bytes(embed_metadata(data, model_metadata(config, precision=precision)))
    return out


def requantize_with_float_group(calibrated: bytes, group: str, out: Path) -> Path:
    """The calibrated model quantized as the converter does, with `group`'s operators left in float."""
    from tensorflow.lite.python import lite

    import tensorflow as tf
    from yolactedge.export.common import TFLITE_OUTPUT_ORDER
    from yolactedge.export.onnx import resolve_model
    from yolactedge.export.tflite_file import embed_metadata, model_object, reorder_outputs
    from yolactedge.modelmeta import model_metadata

    subgraph = model_object(calibrated).subgraphs[0]
    names = [subgraph.tensors[op.outputs[0]].name.decode() for op in subgraph.operators]
    check_groups(names)
    nodes = [names[k] for k in FLOAT_GROUPS[group]]
    data = lite._mlir_quantize(calibrated, False, fully_quantize=True, input_data_type=tf.int8,
                               output_data_type=tf.float32, denylisted_nodes=nodes)
    config = resolve_model("demo", None).config
    out.write_bytes(embed_metadata(reorder_outputs(data, TFLITE_OUTPUT_ORDER),
                                   model_metadata(config, precision="int8")))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="held-out images evaluated (of 500)")
    parser.add_argument("--rows", default="float,before,groups,level,default,equalised")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calib-seed", type=int, default=CALIB_SEED,
                        help="seed of the 100 calibration renders of the int8 rows")
    parser.add_argument("--runs", type=int, default=300, help="interleaved timed runs per int8 file")
    parser.add_argument("--data", default=str(Path(__file__).parent / "results"),
                        help="folder with (or for) the README figures' val/ and calibration/ sets")
    parser.add_argument("--json-out", default=str(Path(__file__).parent / "results" / "int8_accuracy.json"))
    args = parser.parse_args(argv)
    rows = set(args.rows.split(","))

    from yolactedge.data.synthetic import generate_dataset
    from yolactedge.evaluate import compare
    from yolactedge.export import export_model
    from yolactedge.export.calibration import load_calibration_images
    from yolactedge.export.equalise import equalised_streams
    from yolactedge.export.onnx import export_onnx, resolve_model
    from yolactedge.opprofile import interleaved_latency_ms

    data = Path(args.data)
    val = held_out_set(data)
    images = calibration_samples(data, args.calib_seed)

    files: dict[str, Path] = {}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        work = Path(tmp)
        module = resolve_model("demo", None).module
        onnx_new = work / "new.onnx"
        export_onnx(module, onnx_new, progress=False)
        if "float" in rows:
            files["float (fp32 TFLite)"] = convert(onnx_new, work, "fp32", None, work / "fp32.tflite")
        if rows & {"before", "groups"}:
            with old_export(whole=True, inexact=True):
                export_onnx(module, work / "old.onnx", progress=False)
                capture: dict = {}
                files["int8 before (one decode over all anchors)"] = convert(
                    work / "old.onnx", work, "int8", images, work / "before.tflite", capture)
            if "groups" in rows:
                for k, group in enumerate(FLOAT_GROUPS):
                    files[f"  int8 before, {group} in float"] = requantize_with_float_group(
                        capture["calibrated"], group, work / f"group{k}.tflite")
        if "level" in rows:
            with old_export(whole=False, inexact=True):
                files["int8, per-level decode"] = convert(onnx_new, work, "int8", images, work / "level.tflite")
        if "propagated" in rows:
            with propagated_decode_ranges():
                files["int8, default with the decode's ranges propagated (as int16x8)"] = convert(
                    onnx_new, work, "int8", images, work / "propagated.tflite")
        if "widened" in rows:
            with widened_size_ranges():
                files["int8, default with the size chain's ranges widened"] = convert(
                    onnx_new, work, "int8", images, work / "widened.tflite")
        if "percentile" in rows:
            with percentile_ranges(1e-4):
                files["int8, default with ranges at the 0.01% / 99.99% percentiles"] = convert(
                    onnx_new, work, "int8", images, work / "percentile.tflite")
        if "calib300" in rows:
            generate_dataset(work / "calib300", 300, seed=CALIB_SEED, image_size=320)
            more, _ = load_calibration_images(work / "calib300" / "images", 300, 1337, 320, progress=False)
            files["int8, default calibrated on 300 images (the 100 and 200 more)"] = convert(
                onnx_new, work, "int8", more, work / "calib300.tflite")
        for row, variant, label in (("regressions-per-level", regressions_per_level, "box regressions per level"),
                                    ("split-corners", split_corners, "corners added to the centres apart")):
            if row in rows:
                with variant():
                    export_onnx(module, work / f"{row}.onnx", progress=False)
                    files[f"int8, default with the {label}"] = convert(
                        work / f"{row}.onnx", work, "int8", images, work / f"{row}.tflite")
        if "default" in rows:
            files["int8, per-level decode + exact anchor centres (default before equalisation)"] = convert(
                onnx_new, work, "int8", images, work / "default.tflite")
        if "equalised" in rows:
            with equalised_streams(module, images):
                export_onnx(module, work / "equalised.onnx", progress=False)
            files["int8, the same with the streams equalised (the export's default)"] = convert(
                work / "equalised.onnx", work, "int8", images, work / "equalised.tflite")
        if "cpu" in rows:
            files["int8, `yolactedge export --target cpu` (box decode, softmax and exp in float)"] = export_model(
                "demo", "tflite", target="cpu", calib=calibration_folder(data, args.calib_seed),
                output=work / "cpu.tflite", progress=False).path
        results = compare([str(p) for p in files.values()], val / "images", val / "annotations.json",
                          limit=args.images, num_threads=args.threads, progress=False)
        int8 = {label: path for label, path in files.items() if label.startswith("int8")}  # not the diagnostics
        timed = interleaved_latency_ms(list(int8.values()), threads=args.threads, runs=args.runs) if int8 else []
    ms = dict(zip(int8, timed))
    float_row = next((r for label, r in zip(files, results) if label.startswith("float")), None)
    base_ms = next(iter(ms.values()), None)
    lines = [f"demo model, first {args.images} held-out images, {args.threads} thread(s), "
             f"calibration seed {args.calib_seed}",
             "| file | box AP | % of float | mask AP | % of float | int8 ms (ratio to the first int8 row) |",
             "|---|---|---|---|---|---|"]
    table = []
    for label, row in zip(files, results):
        box = f"{100 * row.box_ap / float_row.box_ap:.1f}%" if float_row else ""
        mask = f"{100 * row.mask_ap / float_row.mask_ap:.1f}%" if float_row else ""
        time_cell = f"{ms[label]:.2f} ({ms[label] / base_ms:.3f})" if label in ms else ""
        lines.append(f"| {label} | {row.box_ap:.4f} | {box} | {row.mask_ap:.4f} | {mask} | {time_cell} |")
        table.append({"file": label, "box_ap": row.box_ap, "mask_ap": row.mask_ap, "int8_ms": ms.get(label)})
    print("\n".join(lines))
    write_results(args.json_out, {"images": args.images, "threads": args.threads, "rows": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
