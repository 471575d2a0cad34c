"""yolactedge: YOLACT-Edge from PyTorch checkpoint to int8 TFLite; convert, run, evaluate, benchmark, train.

Heavy dependencies (torch, tensorflow) are imported only when the names that need them are first used, so the
runtime path works with NumPy, OpenCV and one inference runtime.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "Detector": "yolactedge.runtime",
    "Prediction": "yolactedge.runtime",
    "postprocess": "yolactedge.postprocess",
    "Detections": "yolactedge.postprocess",
    "draw_detections": "yolactedge.visualize",
    "build_model": "yolactedge.model.build",
    "load_model": "yolactedge.model.build",
    "save_checkpoint": "yolactedge.model.checkpoint",
    "ModelConfig": "yolactedge.config",
    "get_preset": "yolactedge.config",
    "list_presets": "yolactedge.config",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'yolactedge' has no attribute {name!r}")
