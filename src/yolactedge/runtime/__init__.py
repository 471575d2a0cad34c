"""Run YOLACT-Edge models: one `Detector` over PyTorch, ONNX Runtime and LiteRT, plus image/video input.

Importing this package needs only NumPy and OpenCV; a backend imports its runtime when a model is opened.
"""
from .detector import (
    BACKENDS, POSTPROCESS_OPTIONS, RAW_OUTPUTS, Backend, Detector, InputSpec, ModelError, Prediction, RawOutputs,
    match_outputs, open_backend, resolve_backend,
)
from .images import ImageError, expand_sources, iter_sources, iter_video, load_image

__all__ = [
    "BACKENDS", "POSTPROCESS_OPTIONS", "RAW_OUTPUTS", "Backend", "Detector", "ImageError", "InputSpec", "ModelError",
    "Prediction", "RawOutputs", "expand_sources", "iter_sources", "iter_video", "load_image", "match_outputs", "open_backend",
    "resolve_backend",
]
