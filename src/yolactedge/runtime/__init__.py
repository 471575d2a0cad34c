"""Run YOLACT-Edge models: one `Detector` over PyTorch, ONNX Runtime and LiteRT, plus image/video input.

Importing this package needs only NumPy and OpenCV; a backend imports its runtime when a model is opened.
"""
from .backend import BACKENDS, Backend, open_backend, resolve_backend
from .detector import POSTPROCESS_OPTIONS, Detector, Prediction
from .tensors import RAW_OUTPUTS, InputSpec, ModelError, RawOutputs, match_outputs
from .images import ImageError, expand_sources, iter_sources, iter_video, load_image

__all__ = [
    "BACKENDS", "POSTPROCESS_OPTIONS", "RAW_OUTPUTS", "Backend", "Detector", "ImageError", "InputSpec", "ModelError",
    "Prediction", "RawOutputs", "expand_sources", "iter_sources", "iter_video", "load_image", "match_outputs", "open_backend",
    "resolve_backend",
]
