"""Does the TFLite file compute what the float model computes?

Per output (boxes, scores, proto, masks): max and mean absolute error against the float model (onnxruntime on
the ONNX file, or PyTorch for a checkpoint/module) on a few held-out images. Then, through
`yolactedge.postprocess`, detection agreement: a TFLite detection matches a reference detection of the same
class with box IoU > 0.5 (greedy, best reference first); matched pairs report their mean box and mask IoU.
The report prints as a short table and is written as JSON beside the model (`<stem>.verify.json`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..agreement import Agreement, agreement
from ..fileio import atomic_write_json
from ..postprocess import postprocess
from .common import TFLITE_OUTPUT_ORDER, ExportError

VERIFY_SEED = 1338  # calibration's default seed + 1: images calibration did not see
MATCH_IOU = 0.5


# --- running the models -----------------------------------------------------------------------------------------

def run_tflite(model, images: np.ndarray, *, threads: int = 2) -> tuple[list[dict[str, np.ndarray]], dict]:
    """images NHWC 0..255 (uint8 or float) → (per image {name: float32 output with batch axis}, interface).

    Inputs are quantised with the file's own scale/zero point when it takes integers; integer outputs are
    dequantised. Outputs are named by the serving signature, or by their shapes when a file has none.
    """
    from .tflite_file import open_interpreter, signature_outputs

    data = Path(model).read_bytes() if not isinstance(model, (bytes, bytearray)) else bytes(model)
    interpreter = open_interpreter(data, threads=threads)
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    details = interpreter.get_output_details()
    names = {index: name for name, index in signature_outputs(data).items()}
    if sorted(names.get(d["index"], "") for d in details) != sorted(TFLITE_OUTPUT_ORDER):
        names = _names_by_shape(details)
    results = []
    for image in images:
        interpreter.set_tensor(inp["index"], quantize_input(image[None], inp))
        interpreter.invoke()
        results.append({names[d["index"]]: _dequantize(interpreter.get_tensor(d["index"]), d) for d in details})
    scale, zero_point = inp.get("quantization", (0.0, 0))
    interface = {
        "input_dtype": np.dtype(inp["dtype"]).name, "input_shape": [int(v) for v in inp["shape"]],
        "input_quantization": [float(scale), int(zero_point)] if scale else None,
        "output_order": [names[d["index"]] for d in details],
    }
    return results, interface


def quantize_input(batch: np.ndarray, detail: dict) -> np.ndarray:
    """float/uint8 NHWC 0..255 → the input tensor's dtype (int8: round(x / scale) + zero_point, clipped)."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return batch.astype(dtype)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    q = np.round(batch.astype(np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize(array: np.ndarray, detail: dict) -> np.ndarray:
    if array.dtype.kind == "f":
        return array.astype(np.float32)
    scale, zero_point = detail["quantization"]
    return (array.astype(np.float32) - zero_point) * np.float32(scale)


def _names_by_shape(details: list[dict]) -> dict[int, str]:
    """Name outputs by their shapes: proto is 4-D; boxes [1,A,4]; scores [1,C,A]; masks [1,A,P]."""
    shapes = {d["index"]: tuple(int(v) for v in d["shape"]) for d in details}
    proto = [i for i, s in shapes.items() if len(s) == 4]
    if len(details) != 4 or len(proto) != 1:
        raise ExportError(f"cannot tell the outputs apart by shape: {sorted(shapes.values())}")
    mask_dim = shapes[proto[0]][3]
    rest = [i for i in shapes if i != proto[0]]
    boxes = [i for i in rest if shapes[i][2] == 4]
    masks = [i for i in rest if shapes[i][2] == mask_dim and i not in boxes]
    scores = [i for i in rest if i not in boxes and i not in masks]
    if len(boxes) != 1 or len(masks) != 1 or len(scores) != 1:
        raise ExportError(f"cannot tell the outputs apart by shape: {sorted(shapes.values())}")
    return {boxes[0]: "boxes", scores[0]: "scores", masks[0]: "masks", proto[0]: "proto"}


def reference_outputs(reference: Any, images: np.ndarray) -> tuple[list[dict[str, np.ndarray]], str]:
    """The float model's outputs: onnxruntime for a .onnx path, PyTorch for a module or checkpoint (run at the
    images' size, with anchors scaled as the export scaled them)."""
    from .onnx import resolve_model, run_onnx, run_torch

    if isinstance(reference, (str, os.PathLike)) and str(reference).lower().endswith(".onnx"):
        return run_onnx(reference, images.astype(np.float32)), f"onnxruntime ({Path(reference).name})"
    source = resolve_model(reference, int(images.shape[1]))
    return run_torch(source.module, images.astype(np.float32)), "PyTorch"


# --- comparing ----------------------------------------------------------------------------------------------------

def output_errors(ours: list[dict], reference: list[dict]) -> dict[str, dict]:
    """Per output: max / mean |ours - reference|. Boxes are compared clamped to the image, as post-processing uses
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
    return errors


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
) -> dict:
    """Compare a TFLite file with its float model → report dict (also printed, and written as JSON).

    onnx_or_model: the float ONNX file (run with onnxruntime), or a YolactEdge / checkpoint path / "demo" (PyTorch).
    images: NHWC 0..255 at the model's input size; None renders `count` synthetic images with `seed`.
    json_path: where to write the JSON; None means `<tflite stem>.verify.json` beside the file, False none.
    """
    tflite_path = Path(tflite_path)
    if not tflite_path.is_file():
        raise ExportError(f"{tflite_path}: no such TFLite file")
    try:
        data = tflite_path.read_bytes()
        from .tflite_file import open_interpreter

        (inp,) = open_interpreter(data, threads=1).get_input_details()
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"{tflite_path}: not a loadable TFLite model ({str(exc).strip().splitlines()[0][:120]})") from None
    height, width = int(inp["shape"][1]), int(inp["shape"][2])
    if images is None:
        from .calibration import synthetic_images

        images = synthetic_images(count, seed, height, progress=False)
        images_description = images_description or f"{count} synthetic renders (seed {seed})"
    if images.shape[1:3] != (height, width):
        raise ExportError(f"verification images are {images.shape[1]}x{images.shape[2]}, the model takes {height}x{width}")
    ours, interface = run_tflite(data, images)
    reference, reference_name = reference_outputs(onnx_or_model, images)
    for name in TFLITE_OUTPUT_ORDER:
        if ours[0][name].shape != reference[0][name].shape:
            raise ExportError(
                f"{tflite_path.name}: output {name} is {list(ours[0][name].shape)}, the float model's "
                f"{list(reference[0][name].shape)} (another network?)"
            )
    report = {
        "model": tflite_path.name,
        "reference": reference_name,
        "images": images_description or f"{len(images)} images",
        "num_images": int(len(images)),
        **interface,
        "outputs": output_errors(ours, reference),
        "detections": detection_agreement(ours, reference, (height, width)),
    }
    if print_table:
        print(format_report(report), flush=True)
    if json_path is not False:
        path = Path(json_path) if json_path else tflite_path.with_suffix(".verify.json")
        atomic_write_json(path, report, indent=1)
        report["json"] = str(path)
    return report


def format_report(report: dict) -> str:
    lines = [f"verification: {report['model']} vs {report['reference']} on {report['images']}",
             f"  {'output':<7} {'max abs':>10} {'mean abs':>10}   reference range"]
    for name, e in report["outputs"].items():
        lo, hi = e["reference_range"]
        lines.append(f"  {name:<7} {e['max_abs']:>10.4g} {e['mean_abs']:>10.4g}   {lo:.3g}..{hi:.3g}")
    det = report.get("detections") or {}
    if "skipped" in det:
        lines.append(f"  detections: skipped ({det['skipped']})")
    elif det:
        iou = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(
            f"  detections: {det['matched']}/{det['reference']} reference matched ({det['match_rule']}), "
            f"{det['tflite']} from TFLite; mean box IoU {iou(det['mean_box_iou'])}, "
            f"mean mask IoU {iou(det['mean_mask_iou'])}"
        )
    return "\n".join(lines)
