"""The warped-frame graph's sampling grid, kept in float in an int8 file.

TFLite has no grid_sample: onnx2tf lowers the warp to arithmetic on the sampling positions (scale, floor, clip,
flat index y·W + x, bilinear weights), CAST to int32 and GATHER. Quantized to int8, the flat indices of a
feature map larger than about 11x11 lie on a grid coarser than 1 (P4 of a 320 input: indices up to ~480 in 256
steps), so GATHER fetches neighbouring cells instead of the flow's: on the demo video model the gathered P4 / P5
features were at 3-5 dB SNR and warped-frame mask AP fell from 0.573 to 0.494. `sampling_grid_nodes` names the
operators that compute positions, indices and weights, for the quantizer to leave in float; the features and
their weighted sum stay int8.
"""
from __future__ import annotations

from ..opprofile import is_constant, op_type_name
from .tflite_file import model_object

GATHERS = ("GATHER", "GATHER_ND")
# Operators that only move or combine positions (what the lowering is made of), never a convolution's features.
POSITION_OPS = frozenset({
    "ADD", "SUB", "MUL", "DIV", "FLOOR", "FLOOR_DIV", "ROUND", "NEG", "MINIMUM", "MAXIMUM", "RESHAPE",
    "CONCATENATION", "STRIDED_SLICE", "SLICE", "TRANSPOSE", "CAST", "PACK", "UNPACK", "SPLIT", "SQUEEZE",
    "EXPAND_DIMS", "GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL", "EQUAL", "LOGICAL_AND", "LOGICAL_OR",
    "SELECT", "SELECT_V2", "TILE", "BROADCAST_TO", "RELU", "RELU6", "RELU_0_TO_1", "RELU_N1_TO_1",
})  # the RELUs are clip_by_value's lower bound


def sampling_grid_nodes(data: bytes) -> list[str]:
    """The output tensor names of the operators that compute the gather indices of a float TFLite model (walking
    back from each GATHER's indices through POSITION_OPS), and of those computed from them alone (the bilinear
    weights) → what TensorFlow's quantizer takes as `denylisted_nodes`. Empty when the model gathers nothing."""
    model = model_object(data)
    subgraph = model.subgraphs[0]
    producer = {int(t): op for op in subgraph.operators for t in op.outputs}

    def constant(index: int) -> bool:
        return is_constant(model, subgraph.tensors[index])

    grid: set[int] = set()
    pending = [int(op.inputs[1]) for op in subgraph.operators if op_type_name(model, op) in GATHERS]
    while pending:
        op = producer.get(pending.pop())
        if op is None or op_type_name(model, op) not in POSITION_OPS or int(op.outputs[0]) in grid:
            continue
        grid.update(int(t) for t in op.outputs)
        pending.extend(int(t) for t in op.inputs if t >= 0 and not constant(int(t)))
    for op in subgraph.operators:  # in topological order: what is computed from positions alone
        variable = [int(t) for t in op.inputs if t >= 0 and not constant(int(t))]
        if op_type_name(model, op) in POSITION_OPS and variable and all(t in grid for t in variable):
            grid.update(int(t) for t in op.outputs)
    return [subgraph.tensors[op.outputs[0]].name.decode() for op in subgraph.operators if int(op.outputs[0]) in grid]
