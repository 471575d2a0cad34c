"""The `Backend` interface, opening a model file with the right one, and the class names a model carries.

A backend lives in its own module and imports its runtime only when it is opened, so this module needs only
NumPy and OpenCV.
"""
from __future__ import annotations

import functools
import importlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..assets import is_shipped_name
from ..config import COCO_CLASSES
from .tensors import InputSpec, ModelError, RawOutputs, make_input_converter

BACKENDS = ("torch", "onnxruntime", "litert")
_BACKEND_ALIASES = {"pytorch": "torch", "onnx": "onnxruntime", "ort": "onnxruntime", "tflite": "litert"}
_SUFFIX_BACKENDS = {".pth": "torch", ".pt": "torch", ".onnx": "onnxruntime", ".tflite": "litert"}
_BACKEND_MODULES = {
    "torch": ("torch_backend", "TorchBackend"),
    "onnxruntime": ("onnx_backend", "OnnxBackend"),
    "litert": ("litert_backend", "LiteRTBackend"),
}


# --- class names -----------------------------------------------------------------------------------------------

def default_class_names(num_classes: int) -> tuple[str, ...]:
    """COCO's 80 names for an 80-class model, else "class0", "class1", ..."""
    return COCO_CLASSES if num_classes == len(COCO_CLASSES) else tuple(f"class{i}" for i in range(num_classes))


def parse_class_names(names: Any, num_classes: int, where: str) -> tuple[str, ...]:
    """Class names the model carries: a list, or its JSON text (ONNX metadata). None → the defaults; a value that
    is not a list of num_classes strings → a warning, and the defaults."""
    if names is None:
        return default_class_names(num_classes)
    try:
        names = json.loads(names) if isinstance(names, str) else names
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise ValueError("not a list of strings")
    except ValueError as exc:
        warnings.warn(f"{where}: ignoring unreadable class names ({exc})", stacklevel=3)
        return default_class_names(num_classes)
    if len(names) != num_classes:
        warnings.warn(f"{where}: {len(names)} class names for {num_classes} classes; using default names",
                      stacklevel=3)
        return default_class_names(num_classes)
    return tuple(names)


# --- backends --------------------------------------------------------------------------------------------------

class Backend:
    """What a Detector needs from a runtime. A subclass's `__init__` sets `path`, `input_spec`, `class_names`
    and `output_info` and implements `invoke`; `prepare` converts a resized RGB uint8 image to the input tensor.
    """

    name: ClassVar[str] = ""
    path: str
    input_spec: InputSpec
    class_names: tuple[str, ...]
    # role → (name in the model, shape, dtype), in RAW_OUTPUTS order; filled by the subclass.
    output_info: dict[str, tuple[str, tuple[int, ...], str]]
    # False when the file carried no class names and `class_names` holds the defaults (a Detector warns).
    class_names_found: bool = True

    @functools.cached_property
    def _converter(self) -> Callable[[np.ndarray], np.ndarray]:
        return make_input_converter(self.input_spec)

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """Resized RGB uint8 [H, W, 3] (H, W = input_size) → the input tensor."""
        return self._converter(rgb)

    def invoke(self, tensor: np.ndarray) -> RawOutputs:
        raise NotImplementedError

    def run(self, rgb: np.ndarray) -> RawOutputs:
        """Resized RGB uint8 [H, W, 3] → raw float32 outputs."""
        return self.invoke(self.prepare(rgb))

    # Video mode (YOLACT-Edge's key and warped frames). A backend that supports it overrides all three; the
    # memory is opaque to callers: whatever `invoke_key` returned, handed back to `invoke_warped` unchanged.
    def open_video(self) -> None:
        """Get ready for `invoke_key` / `invoke_warped`, or raise a one-line ModelError saying why not."""
        raise ModelError(f"{self.path}: the {self.name} backend runs image models only; "
                         "video mode (keyframe_interval > 1) needs a video model (.pth, .onnx or .tflite pair)")

    def invoke_key(self, tensor: np.ndarray) -> tuple[RawOutputs, Any]:
        """A key frame: the four outputs (as `invoke`) and the memory the following warped frames need."""
        raise NotImplementedError

    def invoke_warped(self, tensor: np.ndarray, memory: Any) -> RawOutputs:
        """A frame warped from the key frame that left `memory`."""
        raise NotImplementedError

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input_spec.size

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def resolve_backend(model: Any, backend: str = "auto") -> str:
    """The backend's canonical name: `auto` picks it from the file suffix (shipped names and modules → torch)."""
    name = _BACKEND_ALIASES.get(str(backend).lower(), str(backend).lower())
    if name != "auto":
        if name not in BACKENDS:
            raise ModelError(f"unknown backend {backend!r}; expected auto, {', '.join(BACKENDS)}")
        return name
    if not isinstance(model, (str, os.PathLike)) or is_shipped_name(model):
        return "torch"
    suffix = Path(model).suffix.lower()
    if suffix not in _SUFFIX_BACKENDS:
        raise ModelError(f"{model}: cannot tell the backend from the suffix {suffix or '(none)'!r}; "
                         f"use a .pth, .onnx or .tflite file, or pass backend=")
    return _SUFFIX_BACKENDS[suffix]


def open_backend(model: Any, backend: str = "auto", *, num_threads: int | None = None,
                 delegate: str | os.PathLike | None = None) -> Backend:
    """Open `model` (a path, "demo", "demo-video", or for torch a YolactEdge module) with the named backend."""
    name = resolve_backend(model, backend)
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        raise ModelError(f"num_threads must be a positive integer, got {num_threads!r}")
    if delegate is not None and name != "litert":
        raise ModelError(f"delegate= applies to the litert backend (.tflite models), not {name}")
    if isinstance(model, (str, os.PathLike)) and not is_shipped_name(model) and not Path(model).is_file():
        raise ModelError(f"{model}: no such model file")
    module_name, class_name = _BACKEND_MODULES[name]
    cls = getattr(importlib.import_module(f".{module_name}", __package__), class_name)
    options = {"num_threads": num_threads} | ({"delegate": delegate} if name == "litert" else {})
    return cls(model, **options)


def require(module: str, extra: str) -> Any:
    """Import a runtime package, or fail with the install command (one line)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"this backend needs the {module.split('.')[0]} package: "
                          f"pip install 'yolactedge[{extra}]'") from None


def one_line(exc: BaseException, limit: int = 200) -> str:
    """The most telling line of an exception's message, shortened."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:limit]
