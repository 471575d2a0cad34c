"""The box decode, kept in float in the CPU target's int8 file.

In an int8 file the boxes output is stored on one grid over the image, steps of 1/255: the float model's boxes
rounded to it alone keep only about 99.2% of the demo model's box AP (docs/int8-accuracy.md). The NPUs need it
(their graphs are integer end to end), but on a CPU the decode is a few small elementwise operators that XNNPACK
runs as fast in float: `box_decode_nodes` names them, from the box regressions to the boxes output, for the
quantizer to leave in float; the box convolutions themselves stay int8.
"""
from __future__ import annotations

from ..opprofile import op_type_name
from .tflite_file import model_object

# What the decode is made of (onnx2tf's lowering of `decode_boxes`), never a convolution.
DECODE_OPS = frozenset({
    "ADD", "SUB", "MUL", "DIV", "EXP", "CONCATENATION", "RESHAPE", "SPLIT", "SPLIT_V", "STRIDED_SLICE", "SLICE",
    "MINIMUM", "MAXIMUM", "RELU", "RELU6", "RELU_0_TO_1", "RELU_N1_TO_1", "TRANSPOSE", "PACK", "UNPACK",
    "SQUEEZE", "EXPAND_DIMS",
})
BOX_COORDINATES = 4


def boxes_output(subgraph) -> int:
    """The boxes output's tensor index: the one output shaped [1, anchors, 4]."""
    found = [int(t) for t in subgraph.outputs
             if len(subgraph.tensors[t].shape) == 3 and int(subgraph.tensors[t].shape[-1]) == BOX_COORDINATES]
    if len(found) != 1:
        raise ValueError(f"expected one [1, anchors, 4] boxes output, found {len(found)}")
    return found[0]


def box_decode_nodes(data: bytes) -> list[str]:
    """The output tensor names of the operators that compute only the boxes output from the box regressions
    (DECODE_OPS whose every consumer is one of them), in a float TFLite model → TensorFlow's quantizer's
    `denylisted_nodes`."""
    model = model_object(data)
    subgraph = model.subgraphs[0]
    consumers: dict[int, list[int]] = {}
    for index, op in enumerate(subgraph.operators):
        for tensor in op.inputs:
            consumers.setdefault(int(tensor), []).append(index)
    boxes = boxes_output(subgraph)
    decode: set[int] = set()
    for index in reversed(range(len(subgraph.operators))):  # consumers are decided before their producers
        op = subgraph.operators[index]
        if op_type_name(model, op) not in DECODE_OPS:
            continue
        outputs = [int(t) for t in op.outputs]
        feeds_only_decode = all(consumers.get(t) and set(consumers[t]) <= decode for t in outputs if t != boxes)
        if (boxes in outputs or any(consumers.get(t) for t in outputs)) and feeds_only_decode:
            decode.add(index)
    return [subgraph.tensors[subgraph.operators[i].outputs[0]].name.decode() for i in sorted(decode)]
