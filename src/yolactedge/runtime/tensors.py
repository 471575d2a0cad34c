"""What a backend's tensors mean: the input (size, layout, dtype, quantization) and which output is which.

Backends share these so that every runtime feeds the model the same pixels and reads its outputs the same way:
`InputSpec` and `make_input_converter` for the one input, `match_outputs` (by name, else by shape, never by index)
and `RawOutputs` for the four outputs.
"""
from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

RAW_OUTPUTS = ("boxes", "scores", "masks", "proto")
# A video model's ONNX pair: the key-frame graph `<stem>.onnx` outputs RAW_OUTPUTS then these memory tensors; the
# warped-frame graph `<stem>_warp.onnx` takes the image and them. The metadata entry VIDEO_GRAPH_KEY says which.
VIDEO_MEMORY = ("key_p4", "key_p5", "key_flow_features")
# A pair that carries prototypes (ours, `ModelConfig.carry_protos`): its warped graph also takes the key frame's
# prototypes as this input, fed from the key graph's `proto` output (no second copy of it among the outputs).
CARRIED_PROTO = "key_proto"
VIDEO_GRAPH_KEY = "video_graph"
WARPED_GRAPH_SUFFIX = "_warp"


def warped_graph_path(key_graph: str | os.PathLike) -> Path:
    """The warped-frame partner of a key-frame graph: `dir/model.onnx` → `dir/model_warp.onnx`."""
    path = Path(key_graph)
    return path.with_name(path.stem + WARPED_GRAPH_SUFFIX + path.suffix)


def existing_warped_graph(key_graph: str | os.PathLike, video_graph: str | None, fmt: str) -> Path:
    """The warped-frame partner of `key_graph` (a file of format `fmt`, "ONNX" or "TFLite", whose `video_graph`
    metadata is given), or a one-line ModelError when the file is no key frame or its partner is missing."""
    if video_graph != "key":
        raise ModelError(f"{key_graph}: an image model; keyframe_interval > 1 needs a video model's {fmt} pair "
                         f"(yolactedge export VIDEO_CHECKPOINT --format {fmt.lower()})")
    partner = warped_graph_path(key_graph)
    if not partner.is_file():
        raise ModelError(f"{key_graph}: its warped-frame graph {partner.name} is missing beside it; copy it "
                         f"there, or export the video checkpoint again (--format {fmt.lower()} writes both)")
    return partner


def warped_memory_inputs(carry_protos: bool) -> tuple[str, ...]:
    """The memory inputs of a warped-frame graph, in the order the exporter writes them."""
    return VIDEO_MEMORY + ((CARRIED_PROTO,) if carry_protos else ())


def warped_input_source(name: str) -> str:
    """The key-frame output that feeds the warped-frame memory input `name`: `key_proto` ← `proto`, every other
    one ← the output of its own name (a ":0" tensor suffix ignored)."""
    name = _plain_name(name)
    return "proto" if name == CARRIED_PROTO else name


def memory_sources(warped_inputs: Iterable[str], image_input: str, where: str) -> dict[str, str]:
    """Which key-frame output feeds each memory input of a warped-frame graph: → {warped input name: key output}.

    The warped file says what it needs by its input names (`warped_input_source`). Inputs besides the image must
    be VIDEO_MEMORY, with or without `key_proto`; anything else is a one-line ModelError.
    """
    memory = [name for name in warped_inputs if name != image_input]
    plain = [_plain_name(name) for name in memory]
    if sorted(plain) not in (sorted(VIDEO_MEMORY), sorted(warped_memory_inputs(True))):
        raise ModelError(f"{where}: inputs {sorted(memory)} besides {image_input!r} are not a warped-frame graph's "
                         f"memory ({', '.join(VIDEO_MEMORY)}, and {CARRIED_PROTO} when it carries prototypes)")
    return {name: warped_input_source(name) for name in memory}
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
