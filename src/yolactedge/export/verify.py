"""Does the exported file compute what the float model computes, through the runtime users run?

The file runs through the backend `yolactedge predict` uses (`runtime.open_backend`: LiteRT for .tflite), so
the input quantization and output dequantization checked are the ones that ship; the float reference runs
through the same layer (onnxruntime for a .onnx file, PyTorch for a checkpoint or module).

Per output (boxes, scores, proto, masks): max and mean absolute error on a few held-out images (boxes clipped to
the image, as post-processing uses them). Then, through `yolactedge.postprocess`, detection agreement: a
detection matches a reference detection of the same class with box IoU > 0.5 (greedy, best reference first);
matched pairs report their mean box and mask IoU. Last, the checks of the file's precision (`THRESHOLDS`): a
file that fails one is refused with a one-line `VerificationError` naming it. The report prints as a short
table and is written as JSON beside the model (`<stem>.verify.json`) when it passes.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..agreement import Agreement, agreement
from ..fileio import atomic_write_json
from ..postprocessing import postprocess
from .common import TFLITE_OUTPUT_ORDER, ExportError, one_line

VERIFY_SEED = 1338  # calibration's default seed + 1: images calibration did not see
MATCH_IOU = 0.5
INT8_BOX_STEP = 1 / 255  # the int8 boxes' output step: calibrated over the image, [0, 1] (box_ranges.BOXES_RANGE)
# The box error of an anchor whose box is wider than this (image sides) is divided by width / BOX_SIDE_UNIT: a
# quantized regression moves a corner by about 0.1 x side x its error, so the largest boxes move most. Demo int8 at
# 550 (trained at 320), 4 verification images: 0.0487 unscaled on a P7 box of side 0.68 (P3's boxes: 0.0068 at most),
# 0.0203 scaled (5.2 steps). The border defect of x2 = x1 + w (demo at 320): 0.259 unscaled, 0.110 scaled (28 steps).
BOX_SIDE_UNIT = 0.25


class VerificationError(ExportError):
    """The exported file does not agree with its float model well enough for its precision."""


@dataclass(frozen=True)
class Thresholds:
    """What a file of one precision must reach on the verification images.

    matched: least share of detections matched, both ways (matched / reference and matched / file's).
    box_iou, mask_iou: least mean IoU of the matched pairs.
    box_error: most |file's boxes - reference boxes|, both clipped to [0, 1], over every anchor, each divided by
        max(1, the reference box's longer side / BOX_SIDE_UNIT).
    """

    matched: float
    box_iou: float
    mask_iou: float
    box_error: float


# Measured on the demo model (8 synthetic held-out images): int8 matched 0.94, box IoU 0.93, mask IoU 0.97,
# box error 0.026 (6.6 steps of 1/255); fp16 1.0 / 0.996 / 0.9997 / 4e-4; fp32 exact to 3e-7. The random-weight
# test model, whose detections are near-ties, reaches int8 matched 0.87, box IoU 0.83. The limits leave margin
# over both; int8's box error allows 12 steps (the border defect of x2 = x1 + w reached 81). int16x8 (once the
# prediction head's shared constants are quantized per op, see fastcalib.unshare_constants) measures matched 0.99,
# box IoU 0.994, mask IoU 0.99, box error 0.0068; before that fix it matched 0.69.
THRESHOLDS = {
    "fp32": Thresholds(matched=0.98, box_iou=0.98, mask_iou=0.98, box_error=1e-3),
    "fp16": Thresholds(matched=0.95, box_iou=0.98, mask_iou=0.98, box_error=5e-3),
    "int16x8": Thresholds(matched=0.9, box_iou=0.95, mask_iou=0.95, box_error=3 * INT8_BOX_STEP),
    "int8": Thresholds(matched=0.75, box_iou=0.8, mask_iou=0.85, box_error=12 * INT8_BOX_STEP),
}


# --- running the models -----------------------------------------------------------------------------------------

def open_model(model: Any, backend: str = "auto", *, threads: int | None = 2):
    """A runtime backend, exactly as `yolactedge predict` opens it; its errors become one-line ExportErrors."""
    from ..runtime.detector import ModelError, open_backend

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # class names do not matter here
            return open_backend(model, backend, num_threads=threads)
    except (ModelError, ImportError) as exc:
        raise ExportError(one_line(exc)) from None


def run_model(backend, images: np.ndarray) -> list[dict[str, np.ndarray]]:
    """Resized RGB uint8 images through a backend (its own input quantization) → per image {name: float32}."""
    return [backend.run(np.ascontiguousarray(image, dtype=np.uint8))._asdict() for image in images]


def reference_outputs(reference: Any, images: np.ndarray) -> tuple[list[dict[str, np.ndarray]], str]:
    """The float model's outputs: onnxruntime for a .onnx path, PyTorch for a module or checkpoint (run at the
    images' size, with anchors scaled as the export scaled them)."""
    from .onnx import resolve_model

    if isinstance(reference, (str, os.PathLike)) and str(reference).lower().endswith(".onnx"):
        return run_model(open_model(reference, "onnxruntime"), images), f"onnxruntime ({Path(reference).name})"
    source = resolve_model(reference, int(images.shape[1]))
    return run_model(open_model(source.module, "torch", threads=None), images), "PyTorch"


def file_precision(path: Path, input_dtype: str) -> str:
    """The precision the exporter wrote into the file; for a file without our metadata, int8 when it takes int8
    and int16x8 (the loosest float-input precision) otherwise."""
    from ..modelmeta import MetadataError, read_tflite_metadata

    try:
        precision = (read_tflite_metadata(path) or {}).get("precision")
    except MetadataError:
        precision = None
    if precision in THRESHOLDS:
        return precision
    return "int8" if input_dtype == "int8" else "int16x8"


# --- comparing ----------------------------------------------------------------------------------------------------

def output_errors(ours: list[dict], reference: list[dict]) -> dict[str, dict]:
    """Per output: max / mean |ours - reference|. Boxes are compared clipped to the image, as post-processing uses
    them (quantized exports saturate them at the border: their calibration range is the image)."""
    errors = {}
    for name in TFLITE_OUTPUT_ORDER:
        view = (lambda x: np.clip(x, 0.0, 1.0)) if name == "boxes" else (lambda x: x)
        diffs = [np.abs(view(a[name]) - view(b[name])) for a, b in zip(ours, reference)]
        ref = np.concatenate([b[name].ravel() for b in reference])
        errors[name] = {
            "max_abs": float(max(d.max() for d in diffs)),
            "mean_abs": float(np.mean([d.mean() for d in diffs])),
            "reference_range": [float(ref.min()), float(ref.max())],
        }
    errors["boxes"]["max_scaled"] = float(max(scaled_box_errors(a["boxes"], b["boxes"]).max()
                                              for a, b in zip(ours, reference)))
    return errors


def scaled_box_errors(boxes, reference) -> np.ndarray:
    """Per anchor: the largest |corner - reference corner|, both clipped to the image, divided by
    max(1, the clipped reference box's longer side / BOX_SIDE_UNIT)."""
    ours, ref = np.clip(boxes, 0.0, 1.0), np.clip(reference, 0.0, 1.0)
    sides = np.maximum(ref[..., 2] - ref[..., 0], ref[..., 3] - ref[..., 1])
    return np.abs(ours - ref).max(axis=-1) / np.maximum(1.0, sides / BOX_SIDE_UNIT)


def detection_agreement(ours: list[dict], reference: list[dict], image_size: tuple[int, int]) -> dict:
    """Post-process both models' raw outputs and match the detections (see `yolactedge.agreement`)."""
    total = Agreement(0, 0, 0, float("nan"), float("nan"))
    for a, b in zip(ours, reference):
        raw = lambda o: (o["boxes"], o["scores"], o["masks"], o["proto"], image_size)  # noqa: E731
        total = total.merge(agreement(postprocess(*raw(b)), postprocess(*raw(a)), MATCH_IOU))
    return {
        "reference": total.reference, "tflite": total.candidate, "matched": total.matched,
        "recall": total.recall if total.reference else 1.0,
        "precision": total.matched / total.candidate if total.candidate else 1.0,
        "mean_box_iou": None if np.isnan(total.mean_box_iou) else total.mean_box_iou,
        "mean_mask_iou": None if np.isnan(total.mean_mask_iou) else total.mean_mask_iou,
        "match_rule": f"same class, box IoU > {MATCH_IOU}",
    }


def run_checks(report: dict, precision: str) -> list[dict]:
    """The precision's checks on a report → [{"check", "value", "limit", "passed"}]. Detection checks do not apply
    when neither model found anything (a box IoU of no pairs means nothing); the box error always does."""
    limits = THRESHOLDS[precision]
    det = report["detections"]
    box_error = report["outputs"]["boxes"]["max_scaled"]
    checks = [{"check": "box error", "value": box_error, "limit": limits.box_error,
               "passed": box_error <= limits.box_error}]
    if det["reference"] or det["tflite"]:
        matched = min(det["recall"], det["precision"])
        checks.append({"check": "matched detections", "value": matched, "limit": limits.matched,
                       "passed": matched >= limits.matched})
        for key, name, limit in (("mean_box_iou", "mean box IoU", limits.box_iou),
                                 ("mean_mask_iou", "mean mask IoU", limits.mask_iou)):
            value = det[key] if det[key] is not None else 0.0
            checks.append({"check": name, "value": value, "limit": limit, "passed": value >= limit})
    return checks


def failure_message(report: dict) -> str:
    """One line naming every failed check, with the detection counts when matching failed."""
    failed = [c for c in report["checks"] if not c["passed"]]
    parts = []
    for c in failed:
        sign = ">" if c["check"] == "box error" else "<"
        parts.append(f"{c['check']} {c['value']:.4g} {sign} {c['limit']:.4g}")
    det = report["detections"]
    counts = f" ({det['matched']}/{det['reference']} reference matched)" if any(
        c["check"] == "matched detections" for c in failed) else ""
    return (f"verification failed for {report['model']} ({report['precision']} vs {report['reference']}): "
            f"{'; '.join(parts)}{counts}")


# --- the entry point ----------------------------------------------------------------------------------------------

def verify_tflite(
    tflite_path: str | os.PathLike,
    onnx_or_model: Any,
    images: np.ndarray | None = None,
    *,
    count: int = 4,
    seed: int = VERIFY_SEED,
    images_description: str | None = None,
    json_path: str | os.PathLike | bool | None = None,
    print_table: bool = True,
    precision: str | None = None,
) -> dict:
    """Compare a TFLite file with its float model → report dict (printed; written as JSON when it passes).

    onnx_or_model: the float ONNX file (run with onnxruntime), or a YolactEdge / checkpoint path / "demo" (PyTorch).
    images: NHWC 0..255 at the model's input size; None renders `count` synthetic images with `seed`.
    json_path: where to write the JSON; None means `<tflite stem>.verify.json` beside the file, False none.
    precision: whose THRESHOLDS apply; None reads it from the file (see `file_precision`).
    Raises VerificationError (after printing the table) when a check fails; no JSON is written then.
    """
    tflite_path = Path(tflite_path)
    if not tflite_path.is_file():
        raise ExportError(f"{tflite_path}: no such TFLite file")
    backend = open_model(tflite_path, "litert")
    height, width = backend.input_size
    images, images_description = _images(images, count, seed, images_description, (height, width))
    ours = run_model(backend, images)
    reference, reference_name = reference_outputs(onnx_or_model, images)
    for name in TFLITE_OUTPUT_ORDER:
        if ours[0][name].shape != reference[0][name].shape:
            raise ExportError(
                f"{tflite_path.name}: output {name} is {list(ours[0][name].shape)}, the float model's "
                f"{list(reference[0][name].shape)} (another network?)"
            )
    report = _report(tflite_path, backend, ours, reference, reference_name, images_description, precision,
                     print_table)
    if json_path is not False:
        path = Path(json_path) if json_path else tflite_path.with_suffix(".verify.json")
        atomic_write_json(path, report, indent=1)
        report["json"] = str(path)
    return report


def verify_existing(tflite_path: str | os.PathLike, reference: Any) -> dict:
    """`export --verify-only`: an image model's file as `verify_tflite` does; a video model's key-frame file with
    its warped-frame partner too (`verify_pair`) on consecutive frames of a synthetic video, so that neither half
    of a pair passes unchecked. The report is written to `<stem>.verify.json` when it passes."""
    from ..modelmeta import MetadataError, read_tflite_metadata
    from ..runtime.tensors import VIDEO_GRAPH_KEY

    tflite_path = Path(tflite_path)
    if not tflite_path.is_file():
        raise ExportError(f"{tflite_path}: no such TFLite file")
    try:
        video_graph = (read_tflite_metadata(str(tflite_path)) or {}).get(VIDEO_GRAPH_KEY)
    except MetadataError:  # not a TFLite file, or one without our metadata: the runtime says which
        video_graph = None
    if video_graph is None:
        return verify_tflite(tflite_path, reference)
    if video_graph != "key":
        raise ExportError(f"{tflite_path}: the {video_graph}-frame file of a video model; verify its key-frame "
                          f"file, which checks both")
    from .calibration import VIDEO_GROUP, synthetic_video_frames

    height, _ = open_model(tflite_path, "litert").input_size
    frames = synthetic_video_frames(VIDEO_GROUP, VERIFY_SEED, height, group=VIDEO_GROUP, progress=False)
    description = f"{VIDEO_GROUP} consecutive frames of a synthetic video (seed {VERIFY_SEED})"
    report = verify_pair(tflite_path, reference, frames, description, None, True)
    path = tflite_path.with_suffix(".verify.json")
    atomic_write_json(path, report, indent=1)
    report["json"] = str(path)
    return report


def verify_pair(key_file: Path, reference: Any, frames: np.ndarray, description: str, precision: str | None,
                print_table: bool) -> dict:
    """The key-frame file on every frame, then the warped-frame file on frames 1.. from frame 0's memory (through
    the runtime: the TFLite key frame's own memory), both against the float model (the ONNX pair's key-frame
    file, or a video checkpoint) → the key-frame report with the warped-frame report under "warped"."""
    report = verify_tflite(key_file, reference, frames, images_description=description, json_path=False,
                           print_table=print_table, precision=precision)
    report["warped"] = verify_warped(key_file, reference, frames, images_description=description,
                                     print_table=print_table, precision=precision)
    return report


def verify_warped(key_tflite: str | os.PathLike, reference: Any, frames: np.ndarray, *,
                  images_description: str, print_table: bool = True, precision: str | None = None) -> dict:
    """A video model's warped-frame TFLite file against the float model (the ONNX pair's key-frame file, or a
    video YolactEdge): frames[1:] warped from frames[0]'s memory, each runtime from its own key frame (as
    `Detector(keyframe_interval > len(frames))` runs them) → a report as `verify_tflite`'s (not written). Raises
    VerificationError when a check fails."""
    from ..runtime.tensors import warped_graph_path

    key_tflite = Path(key_tflite)
    backend = open_model(key_tflite, "litert")
    ours = _warped_chain(backend, frames)
    float_backend = open_model(reference)
    expected = _warped_chain(float_backend, frames)
    description = f"{images_description}: frames 2-{len(frames)} warped from frame 1"
    name = warped_graph_path(reference).name if float_backend.name == "onnxruntime" else "PyTorch"
    reference_name = f"{float_backend.name} ({name}, its own key frame's memory)"
    return _report(warped_graph_path(key_tflite), backend, ours, expected, reference_name, description,
                   precision, print_table, warped=True)


def _warped_chain(backend, frames: np.ndarray) -> list[dict[str, np.ndarray]]:
    """A backend's warped frames: frames[1:] from the memory frames[0] leaves."""
    backend.open_video()
    _, memory = backend.invoke_key(backend.prepare(np.ascontiguousarray(frames[0], dtype=np.uint8)))
    return [backend.invoke_warped(backend.prepare(np.ascontiguousarray(f, dtype=np.uint8)), memory)._asdict()
            for f in frames[1:]]


def _report(tflite_path: Path, backend, ours: list[dict], reference: list[dict], reference_name: str,
            images_description: str, precision: str | None, print_table: bool, *, warped: bool = False) -> dict:
    """Errors, detection agreement and the precision's checks → the report (printed); a failure raises."""
    from .tflite_file import output_order

    spec = backend.input_spec
    height, width = backend.input_size
    report = {
        "model": tflite_path.name,
        "reference": reference_name,
        "images": images_description,
        "num_images": int(len(ours)),
        "runtime": f"{backend.name} ({Path(tflite_path).name})",
        "precision": precision or file_precision(tflite_path, spec.dtype.name),
        "output_order": output_order(tflite_path.read_bytes()),
        "input_dtype": spec.dtype.name,
        "input_quantization": [spec.scale, spec.zero_point] if spec.quantized else None,
        "outputs": output_errors(ours, reference),
        "detections": detection_agreement(ours, reference, (height, width)),
    }
    if warped:
        report["frame"] = "warped"
    report["checks"] = run_checks(report, report["precision"])
    report["passed"] = all(c["passed"] for c in report["checks"])
    if print_table:
        print(format_report(report), flush=True)
    if not report["passed"]:
        raise VerificationError(failure_message(report))
    return report


def _images(images: np.ndarray | None, count: int, seed: int, description: str | None, size: tuple[int, int]):
    """The given images (checked against the model's size), else `count` synthetic renders → (images, description)."""
    if images is None:
        from .calibration import synthetic_images

        images = synthetic_images(count, seed, size[0], progress=False)
        description = description or f"{count} synthetic renders (seed {seed})"
    if images.shape[1:3] != size:
        raise ExportError(f"verification images are {images.shape[1]}x{images.shape[2]}, "
                          f"the model takes {size[0]}x{size[1]}")
    return images, description or f"{len(images)} images"


def format_report(report: dict) -> str:
    lines = [f"verification: {report['model']} ({report['precision']}, {report['runtime']}) vs {report['reference']} "
             f"on {report['images']}",
             f"  {'output':<7} {'max abs':>10} {'mean abs':>10}   reference range"]
    for name, e in report["outputs"].items():
        lo, hi = e["reference_range"]
        lines.append(f"  {name:<7} {e['max_abs']:>10.4g} {e['mean_abs']:>10.4g}   {lo:.3g}..{hi:.3g}")
    det = report["detections"]
    iou = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    lines.append(
        f"  detections: {det['matched']}/{det['reference']} reference matched ({det['match_rule']}), "
        f"{det['tflite']} from TFLite; mean box IoU {iou(det['mean_box_iou'])}, "
        f"mean mask IoU {iou(det['mean_mask_iou'])}"
    )
    for c in report["checks"]:
        sign = "<=" if c["check"] == "box error" else ">="
        verdict = "ok" if c["passed"] else "FAILED"
        lines.append(f"  check  {c['check']:<19} {c['value']:.4g} {sign} {c['limit']:.4g}  {verdict}")
    return "\n".join(lines)
