"""Export: PyTorch → ONNX → TensorFlow (onnx2tf) → TFLite (fp32, fp16, int8, int16x8), verified, offline.

`export_model` is the one entry point the CLI needs. The stages, in the order the data changes form:

- `export.onnx`: `export_onnx` (atomic, simplified, metadata, checked against PyTorch), `inspect_onnx`.
- `export.calibration`: calibration images from a folder or synthetic renders.
- `export.onnx2tf_step`: `onnx_to_keras` (ONNX → Keras with onnx2tf, no network).
- `export.converter`: `keras_to_tflite` (TFLite converter set-up per precision).
- `export.fastcalib`: min/max calibration on LiteRT, patched into TensorFlow's calibrator.
- `export.tflite_file`: the TFLite file itself: `inspect_tflite`, output order, signature (no TensorFlow).
- `export.vela`: `run_vela` (i.MX 93's Ethos-U compiler).
- `export.verify`: `verify_tflite` (the file through the runtime backend vs the float model).
- `export.pipeline`: `export_model` and `export_tflite`, composing the above.

Importing this package is cheap: torch, onnx and TensorFlow are imported only when a stage runs.
Every user error is an `ExportError` (a `ValueError`) with a one-line message; nothing is left half-written at
the output path.
"""
from __future__ import annotations

import importlib

from .common import (
    FORMATS, ONNX_OUTPUT_ORDER, PRECISIONS, TARGETS, TFLITE_OUTPUT_ORDER, ExportError, ExportResult, Stages,
)

_LAZY = {
    "export_model": "yolactedge.export.pipeline",
    "export_tflite": "yolactedge.export.pipeline",
    "export_onnx": "yolactedge.export.onnx",
    "inspect_onnx": "yolactedge.export.onnx",
    "resolve_model": "yolactedge.export.onnx",
    "find_images": "yolactedge.export.calibration",
    "load_calibration_images": "yolactedge.export.calibration",
    "synthetic_images": "yolactedge.export.calibration",
    "onnx_to_keras": "yolactedge.export.onnx2tf_step",
    "keras_to_tflite": "yolactedge.export.converter",
    "inspect_tflite": "yolactedge.export.tflite_file",
    "run_vela": "yolactedge.export.vela",
    "vela_available": "yolactedge.export.vela",
    "verify_tflite": "yolactedge.export.verify",
    "verify_existing": "yolactedge.export.verify",
}

__all__ = [
    "ExportError", "ExportResult", "FORMATS", "ONNX_OUTPUT_ORDER", "PRECISIONS", "Stages", "TARGETS",
    "TFLITE_OUTPUT_ORDER", *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'yolactedge.export' has no attribute {name!r}")
