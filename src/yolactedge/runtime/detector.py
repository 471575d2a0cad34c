"""One `Detector` over three runtimes: PyTorch (.pth), ONNX Runtime (.onnx) and LiteRT (.tflite).

    image (path or RGB uint8) → resize to the model input (bilinear, no aspect kept) → cast/quantize
        → backend.invoke → raw outputs (boxes, scores, masks, proto; float32) → postprocess → Detections

A backend lives in its own module and imports its runtime only when it is opened, so this module needs only
NumPy and OpenCV. Backends share what is here: `InputSpec` (size, layout, dtype, quantization of the one input),
`match_outputs` (which output is which: by name, else by shape, never by index) and `RawOutputs`.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import itertools
import json
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import cv2
import numpy as np

from ..config import COCO_CLASSES
from ..postprocess import Detections, postprocess
from .images import as_rgb_uint8, load_image

RAW_OUTPUTS = ("boxes", "scores", "masks", "proto")
BACKENDS = ("torch", "onnxruntime", "litert")
_BACKEND_ALIASES = {"pytorch": "torch", "onnx": "onnxruntime", "ort": "onnxruntime", "tflite": "litert"}
_SUFFIX_BACKENDS = {".pth": "torch", ".pt": "torch", ".onnx": "onnxruntime", ".tflite": "litert"}
_BACKEND_MODULES = {
    "torch": ("torch_backend", "TorchBackend"),
    "onnxruntime": ("onnx_backend", "OnnxBackend"),
    "litert": ("litert_backend", "LiteRTBackend"),
}
# Keyword options of `postprocess` that a Detector passes through (score_threshold, nms, ...).
POSTPROCESS_OPTIONS = tuple(
    name for name, p in inspect.signature(postprocess).parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY
)
MISSING_NAMES_WARNING = ("{path}: the model carries no class names (no embedded metadata, no {sidecar}.json beside "
                         "it); using default names: pass class_names=[...] / --names FILE")
_EXPECTED_OUTPUTS = "boxes [1,A,4], scores [1,C,A], masks [1,A,P], proto [1,Hp,Wp,P]"


class ModelError(ValueError):
    """A model file, backend or option the runtime cannot use; the message says why in one line."""


class RawOutputs(NamedTuple):
    """The network's four outputs for one image, float32, batch axis kept (A anchors, C classes, P prototypes)."""

    boxes: np.ndarray  # [1, A, 4] normalised x1, y1, x2, y2
    scores: np.ndarray  # [1, C, A] softmax without background
    masks: np.ndarray  # [1, A, P] tanh coefficients
    proto: np.ndarray  # [1, Hp, Wp, P]


# --- the model input -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InputSpec:
    """The one input tensor: (H, W), layout "NCHW" or "NHWC", dtype, and quantization.

    scale 0 means not quantized: the tensor holds pixel values 0..255 in `dtype`. Otherwise the tensor holds
    q = round(pixel / scale) + zero_point, clipped to the dtype (the TFLite convention).
    """

    name: str
    size: tuple[int, int]
    layout: str
    dtype: np.dtype
    scale: float = 0.0
    zero_point: int = 0

    @classmethod
    def from_shape(cls, name: str, shape: Sequence[Any], dtype: Any, where: str, *, scale: float = 0.0,
                   zero_point: int = 0) -> "InputSpec":
        """Layout from where the 3 colour channels sit in a [1, ...] shape; anything else is refused."""
        dims = list(shape)
        if len(dims) != 4 or not all(isinstance(d, (int, np.integer)) and d > 0 for d in dims[1:]):
            raise ModelError(f"{where}: input {name!r} has shape {dims}; expected an image [1,3,H,W] or [1,H,W,3]")
        if dims[1] == 3 and dims[3] != 3:
            layout, size = "NCHW", (int(dims[2]), int(dims[3]))
        elif dims[3] == 3:
            layout, size = "NHWC", (int(dims[1]), int(dims[2]))
        else:
            raise ModelError(f"{where}: input {name!r} has shape {dims}; expected 3 colour channels")
        dtype = np.dtype(dtype)
        if dtype.kind not in "fiu":
            raise ModelError(f"{where}: input {name!r} has dtype {dtype}; expected float or integer pixels")
        if dtype.kind in "iu" and not scale:
            scale, zero_point = 1.0, 0  # an unquantized integer input takes the pixels as they are
        return cls(name, size, layout, dtype, float(scale), int(zero_point))

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0

    def describe(self) -> str:
        h, w = self.size
        shape = [1, 3, h, w] if self.layout == "NCHW" else [1, h, w, 3]
        quant = f", scale {self.scale:g}, zero point {self.zero_point}" if self.quantized else ""
        return f"{self.name} {self.dtype} {shape} {self.layout} RGB 0..255{quant}"


def make_input_converter(spec: InputSpec) -> Callable[[np.ndarray], np.ndarray]:
    """→ f(resized RGB uint8 [H, W, 3]) → the input tensor [1, ...] in the model's layout and dtype.

    NCHW is filled plane by plane from cv2.split, float inputs casting on assignment (4x faster than a
    transposed copy followed by astype: 0.4 ms at 550x550).
    """
    if spec.layout == "NHWC":
        cast = _pixel_cast(spec)

        def convert(rgb: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(rgb if cast is None else cast(rgb))[None]
    else:
        cast = _pixel_cast(spec) if spec.quantized else None

        def convert(rgb: np.ndarray) -> np.ndarray:
            out = np.empty((1, 3, *rgb.shape[:2]), spec.dtype)
            for channel, plane in enumerate(cv2.split(rgb if cast is None else cast(rgb))):
                out[0, channel] = plane
            return out
    return convert


def _pixel_cast(spec: InputSpec) -> Callable[[np.ndarray], np.ndarray] | None:
    """uint8 pixels → the input dtype, elementwise; None when they go in unchanged.

    Quantized inputs use a 256-entry lookup table built from the model's own scale and zero point (exact for
    any scale); the common full-int8 input (scale 1, zero point −128) is a bit flip, q = p ^ 0x80.
    """
    if not spec.quantized:
        return lambda pixels: pixels.astype(spec.dtype)
    if spec.dtype == np.uint8 and spec.scale == 1.0 and spec.zero_point == 0:
        return None
    if spec.dtype == np.int8 and spec.scale == 1.0 and spec.zero_point == -128:
        return lambda pixels: np.bitwise_xor(pixels, np.uint8(0x80)).view(np.int8)
    table = quantize(np.arange(256), spec.scale, spec.zero_point, spec.dtype)
    if spec.dtype.itemsize <= 2:  # cv2.LUT takes 8- and 16-bit tables: 10x faster than NumPy indexing
        return lambda pixels: cv2.LUT(pixels, table)
    return lambda pixels: table[pixels]


def quantize(values: np.ndarray, scale: float, zero_point: int, dtype: Any) -> np.ndarray:
    """q = round(x / scale) + zero_point, clipped to the integer dtype (round half to even, as TFLite)."""
    info = np.iinfo(dtype)
    q = np.round(np.asarray(values, np.float64) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """x = (q − zero_point) · scale as float32; float tensors pass through as float32."""
    if values.dtype.kind == "f":
        return values.astype(np.float32, copy=False)
    if not scale:
        raise ModelError(f"integer output of dtype {values.dtype} carries no quantization scale")
    return ((values.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32, copy=False)


# --- the outputs -----------------------------------------------------------------------------------------------

def match_outputs(shapes: Mapping[str, Sequence[int]], where: str) -> dict[str, str]:
    """Which output is which: → {role: output name} for the roles boxes, scores, masks, proto.

    By name when every role is an output name (case-insensitive, a ":0" tensor suffix ignored); else by shape:
    proto is the one 4-D output [1,Hp,Wp,P], and of the 3-D ones boxes [1,A,4] and masks [1,A,P] share A with
    scores [1,C,A]. Exactly one assignment must fit, so a model whose shapes are ambiguous (P = 4, say) or
    that is not YOLACT-Edge at all is refused with a one-line error; the index order is never used.
    """
    shapes = {name: tuple(int(d) for d in shape) for name, shape in shapes.items()}
    by_name = {_plain_name(name): name for name in shapes}
    if all(role in by_name for role in RAW_OUTPUTS):
        mapping = {role: by_name[role] for role in RAW_OUTPUTS}
        if not _fits(*(shapes[mapping[role]] for role in RAW_OUTPUTS)):
            raise ModelError(f"{where}: outputs named {', '.join(RAW_OUTPUTS)} have shapes "
                             f"{_describe_shapes(shapes)}; expected {_EXPECTED_OUTPUTS}")
        return mapping
    four_d = [n for n, s in shapes.items() if len(s) == 4]
    three_d = [n for n, s in shapes.items() if len(s) == 3]
    fits = []
    if len(shapes) == 4 and len(four_d) == 1 and len(three_d) == 3:
        for boxes, scores, masks in itertools.permutations(three_d):
            if _fits(shapes[boxes], shapes[scores], shapes[masks], shapes[four_d[0]]):
                fits.append({"boxes": boxes, "scores": scores, "masks": masks, "proto": four_d[0]})
    if len(fits) == 1:
        return fits[0]
    reason = "ambiguous shapes" if fits else "do not look like YOLACT-Edge's"
    raise ModelError(f"{where}: outputs {_describe_shapes(shapes)} {reason}; expected {_EXPECTED_OUTPUTS} "
                     f"(found by name or, failing that, by shape)")


def _fits(boxes, scores, masks, proto) -> bool:
    if not (len(boxes) == len(scores) == len(masks) == 3 and len(proto) == 4):
        return False
    anchors, prototypes = boxes[1], proto[3]
    return (boxes[0] == scores[0] == masks[0] == proto[0] == 1 and boxes[2] == 4 and scores[2] == anchors
            and scores[1] >= 1 and masks[1] == anchors and masks[2] == prototypes and anchors >= 1)


def _plain_name(name: str) -> str:
    head, _, tail = name.rpartition(":")
    return (head if head and tail.isdigit() else name).lower()


def _describe_shapes(shapes: Mapping[str, Sequence[int]]) -> str:
    return ", ".join(f"{name} {list(shape)}" for name, shape in shapes.items())


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

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input_spec.size

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def resolve_backend(model: Any, backend: str = "auto") -> str:
    """The backend's canonical name: `auto` picks it from the file suffix ("demo" and modules → torch)."""
    name = _BACKEND_ALIASES.get(str(backend).lower(), str(backend).lower())
    if name != "auto":
        if name not in BACKENDS:
            raise ModelError(f"unknown backend {backend!r}; expected auto, {', '.join(BACKENDS)}")
        return name
    if not isinstance(model, (str, os.PathLike)) or str(model) == "demo":
        return "torch"
    suffix = Path(model).suffix.lower()
    if suffix not in _SUFFIX_BACKENDS:
        raise ModelError(f"{model}: cannot tell the backend from the suffix {suffix or '(none)'!r}; "
                         f"use a .pth, .onnx or .tflite file, or pass backend=")
    return _SUFFIX_BACKENDS[suffix]


def open_backend(model: Any, backend: str = "auto", *, num_threads: int | None = None,
                 delegate: str | os.PathLike | None = None) -> Backend:
    """Open `model` (a path, "demo", or for torch a YolactEdge module) with the named backend."""
    name = resolve_backend(model, backend)
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        raise ModelError(f"num_threads must be a positive integer, got {num_threads!r}")
    if delegate is not None and name != "litert":
        raise ModelError(f"delegate= applies to the litert backend (.tflite models), not {name}")
    if isinstance(model, (str, os.PathLike)) and str(model) != "demo" and not Path(model).is_file():
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


# --- the detector ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Prediction:
    """One image's result: the Detections (in original-image pixels), stage timings in milliseconds
    (`preprocess`: resize + cast/quantize, `inference`: the runtime call, `postprocess`: NMS + masks; decoding an
    image file is not counted), the original (H, W), the class names, and the path when one was given."""

    detections: Detections
    timings: dict[str, float]
    image_size: tuple[int, int]
    class_names: tuple[str, ...] = field(repr=False)
    source: str | None = None

    def __len__(self) -> int:
        return len(self.detections)

    def summary(self) -> str:
        """One line such as "2 circle, 1 star (pre 0.4 ms, infer 12.0 ms, post 1.1 ms)"."""
        t = self.timings
        return (f"{self.detections.summary(self.class_names)} (pre {t['preprocess']:.1f} ms, "
                f"infer {t['inference']:.1f} ms, post {t['postprocess']:.1f} ms)")


class Detector:
    """Instance segmentation with any YOLACT-Edge model file.

    >>> detector = Detector("model_int8.tflite", num_threads=2, score_threshold=0.3)
    >>> prediction = detector("photo.jpg")            # or an RGB uint8 array
    >>> prediction.detections.boxes, prediction.timings["inference"]

    model: a .pth checkpoint, .onnx or .tflite file, "demo", or a YolactEdge module (torch backend).
    backend: "auto" (by suffix), "torch", "onnxruntime" or "litert".
    num_threads: CPU threads of the runtime (None: its default; for torch this sets torch's global count).
    delegate: litert only: path of an external delegate library, e.g. /usr/lib/libvx_delegate.so on i.MX 8M Plus.
    class_names: override the names the model carries (torch: its config; onnx: metadata; tflite: the sidecar
        `<model>.json`, else its embedded metadata; else COCO's for 80 classes, "class0".. otherwise, with a
        warning).
    postprocess_options: keyword options of `yolactedge.postprocess.postprocess` (score_threshold, iou_threshold,
        nms, top_k, max_detections, mask_threshold).
    """

    def __init__(self, model: Any, backend: str = "auto", *, num_threads: int | None = None,
                 delegate: str | os.PathLike | None = None, class_names: Sequence[str] | None = None,
                 **postprocess_options: Any) -> None:
        unknown = sorted(set(postprocess_options) - set(POSTPROCESS_OPTIONS))
        if unknown:
            raise ModelError(f"unknown option {unknown[0]!r}; "
                             f"postprocess options are {', '.join(POSTPROCESS_OPTIONS)}")
        if isinstance(class_names, str):
            raise ModelError(f"class_names must be a list of names, not the string {class_names!r}")
        self.backend = open_backend(model, backend, num_threads=num_threads, delegate=delegate)
        if class_names is None and not self.backend.class_names_found:
            warnings.warn(MISSING_NAMES_WARNING.format(path=self.backend.path, sidecar=Path(self.backend.path).stem),
                          stacklevel=2)
        if class_names is not None:
            class_names = tuple(str(n) for n in class_names)
            if len(class_names) != self.backend.num_classes:
                raise ModelError(f"{len(class_names)} class names given for a model with "
                                 f"{self.backend.num_classes} classes")
        self.class_names: tuple[str, ...] = class_names or self.backend.class_names
        self.postprocess_options = dict(postprocess_options)

    @property
    def input_size(self) -> tuple[int, int]:
        """The model's input (H, W)."""
        return self.backend.input_size

    def __repr__(self) -> str:
        h, w = self.input_size
        return (f"Detector({self.backend.path!r}, backend={self.backend.name!r}, input {h}x{w}, "
                f"{len(self.class_names)} classes)")

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 [H, W, 3] at any size → the model's input tensor (bilinear resize, then cast/quantize)."""
        h, w = self.input_size
        if image.shape[:2] != (h, w):
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        return self.backend.prepare(image)

    def __call__(self, image: np.ndarray | str | os.PathLike) -> Prediction:
        """Detect in one image: an RGB uint8 array ([H, W] gray and [H, W, 4] RGBA are converted) or a file path."""
        source, image = _read(image)
        t0 = time.perf_counter()
        tensor = self.preprocess(image)
        t1 = time.perf_counter()
        raw = self.backend.invoke(tensor)
        t2 = time.perf_counter()
        detections = postprocess(*raw, image.shape[:2], **self.postprocess_options)
        t3 = time.perf_counter()
        timings = {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3}
        return Prediction(detections, timings, image.shape[:2], self.class_names, source)

    def predict_batch(self, images: Iterable[np.ndarray | str | os.PathLike]) -> list[Prediction]:
        """One Prediction per image, in order (the models take batch 1, so images run one after another)."""
        return [self(image) for image in images]

    def raw(self, image: np.ndarray | str | os.PathLike) -> RawOutputs:
        """The network's raw float32 outputs for one image (no postprocessing)."""
        return self.backend.invoke(self.preprocess(_read(image)[1]))

    def describe(self) -> str:
        """A few lines: file, backend, input, outputs (with the names they were found under), classes."""
        b = self.backend
        names = ", ".join(self.class_names[:8]) + (", ..." if len(self.class_names) > 8 else "")
        lines = [f"model       {b.path}", f"backend     {b.name}", f"input       {b.input_spec.describe()}"]
        for role, (name, shape, dtype) in b.output_info.items():
            found = "" if name == role else f" (output {name!r})"
            lines.append(f"output      {role:<7} {dtype} {list(shape)}{found}")
        lines.append(f"classes     {len(self.class_names)} ({names})")
        return "\n".join(lines)


def _read(image: np.ndarray | str | os.PathLike) -> tuple[str | None, np.ndarray]:
    """A path (decoded) or an array (checked) → (the path or None, RGB uint8 [H, W, 3])."""
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image), load_image(image)
    return None, as_rgb_uint8(image)
