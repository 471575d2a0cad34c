"""Constants on an exact int8 grid: the anchor centres that the box decode adds, stored without rounding.

TensorFlow's quantizer stores a constant operand of ADD or SUB on the tightest grid over its own min/max. For
the anchor centres ((i + 0.5) / W on a W-cell level) that grid is about 1/255 of the image and misses every
centre by up to half a step, so every box corner is off by up to 0.002 of the image before the output's own
rounding: on the demo model, 0.003 box AP (docs/int8-accuracy.md). The same values are exact on the grid k / 2W,
which int8 holds whenever 2W <= 255 (an int8 ADD rescales each input by its own scale, so a coarser scale on
the constant costs nothing). `store_exact_constants` rewrites such constants after quantization.
"""
from __future__ import annotations

import contextlib

import numpy as np

from ..opprofile import op_type_name
from .tflite_file import model_bytes, model_object

ELEMENTWISE = ("ADD", "SUB")
GRID_TOLERANCE = 1e-4  # of one grid step: float32 rounding of k / d, not a different value
MAX_SCALE_RATIO = 2.0 ** 8  # XNNPACK's int8 ADD/SUB take an input scale below 2^8 times the output's


def exact_grid(values: np.ndarray) -> tuple[float, int] | None:
    """The int8 (scale, zero point) that holds every value exactly, as k / d for the smallest d <= 255 whose
    256 levels reach from min(0, values) to max(0, values) → None when no such grid exists."""
    values = np.asarray(values, np.float64).ravel()
    if values.size == 0 or not np.all(np.isfinite(values)):
        return None
    for d in range(1, 256):
        k = values * d
        if np.abs(k - np.round(k)).max() > GRID_TOLERANCE:
            continue
        low, high = min(0, int(np.round(k.min()))), max(0, int(np.round(k.max())))
        if high - low <= 255:
            return 1.0 / d, -128 - low
    return None


def store_exact_constants(quantized: bytes, float_model: bytes) -> tuple[bytes, int]:
    """The int8 model with each constant operand of ADD/SUB that has an exact int8 grid (`exact_grid`) but is
    stored off it re-stored on it, reading the true values from the float model the quantizer started from
    (its ops are matched by output tensor name) → (model bytes, how many constants changed)."""
    from ai_edge_litert import schema_py_generated as schema

    reference = _float_constants(model_object(float_model))
    model = model_object(quantized)
    subgraph = model.subgraphs[0]
    changed = 0
    for op in subgraph.operators:
        if op_type_name(model, op) not in ELEMENTWISE:
            continue
        constants = reference.get(subgraph.tensors[op.outputs[0]].name)
        for position, values in (constants or {}).items():
            tensor = subgraph.tensors[op.inputs[position]]
            stored = _buffer(model, tensor)
            grid = exact_grid(values)
            if grid is None or tensor.type != schema.TensorType.INT8 or stored is None or stored.size != values.size:
                continue
            q = tensor.quantization
            if q is None or q.scale is None or len(q.scale) != 1:
                continue
            old = (stored.view(np.int8).astype(np.float64) - q.zeroPoint[0]) * q.scale[0]
            if np.abs(old - values).max() <= GRID_TOLERANCE * grid[0]:
                continue  # already exact
            scale, zero_point = grid
            output = subgraph.tensors[op.outputs[0]].quantization
            output_scale = list(output.scale) if output is not None and output.scale is not None else []
            if len(output_scale) != 1 or scale >= MAX_SCALE_RATIO * output_scale[0]:
                continue  # would leave XNNPACK's fast kernels
            levels = np.round(values.astype(np.float64) / scale) + zero_point
            model.buffers[tensor.buffer].data = levels.astype(np.int8).view(np.uint8)
            q.scale, q.zeroPoint = [scale], [zero_point]
            changed += 1
    return (model_bytes(model), changed) if changed else (quantized, 0)


@contextlib.contextmanager
def float_model_capture(state: dict):
    """Record in state["float_model"] the float model TensorFlow's calibrator is given (what `quantized` in
    `store_exact_constants` was made from; its op output names are the quantized model's)."""
    from tensorflow.lite.python.optimize import calibrator

    original_init = calibrator.Calibrator.__init__

    def init(self, model_content, *args, **kwargs):
        state.setdefault("float_model", bytes(model_content))
        original_init(self, model_content, *args, **kwargs)

    calibrator.Calibrator.__init__ = init
    try:
        yield
    finally:
        calibrator.Calibrator.__init__ = original_init


def _float_constants(model) -> dict[bytes, dict[int, np.ndarray]]:
    """{output tensor name of each ADD/SUB: {input position: float32 constant values}} of a float model."""
    subgraph = model.subgraphs[0]
    out: dict[bytes, dict[int, np.ndarray]] = {}
    for op in subgraph.operators:
        if op_type_name(model, op) not in ELEMENTWISE:
            continue
        constants = {}
        for position, index in enumerate(op.inputs):
            tensor = subgraph.tensors[index]
            data = _buffer(model, tensor)
            if data is not None and tensor.type == 0:  # TensorType.FLOAT32
                constants[position] = data.view(np.float32)
        if len(constants) == 1:
            out[subgraph.tensors[op.outputs[0]].name] = constants
    return out


def _buffer(model, tensor) -> np.ndarray | None:
    data = model.buffers[tensor.buffer].data if 0 < tensor.buffer < len(model.buffers) else None
    return np.asarray(data, np.uint8) if data is not None and len(data) else None

