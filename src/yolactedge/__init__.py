"""yolactedge: YOLACT-Edge from PyTorch checkpoint to int8 TFLite; convert, run, evaluate, benchmark, train.

Heavy dependencies (torch, tensorflow) are imported only when the names that need them are first used, so the
runtime path works with NumPy, OpenCV and one inference runtime. Each public name is resolved once and then kept
in the package's namespace; no public name is also a submodule, so importing any module cannot replace one.
"""
from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("yolactedge")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_LAZY = {
    "Detector": "yolactedge.runtime",
    "Prediction": "yolactedge.runtime",
    "postprocess": "yolactedge.postprocessing",
    "Detections": "yolactedge.postprocessing",
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
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'yolactedge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
