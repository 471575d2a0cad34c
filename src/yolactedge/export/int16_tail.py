"""The boxes output's tail in int16, for the Ethos-U (`--target imx93`).

An int8 file stores its boxes output on one 1/255 grid over the image, which alone caps the demo's box AP near
99.2% of float (docs/int8-accuracy.md). Vela runs a requantizing QUANTIZE int8 → int16 and int16 ADD and
CONCATENATION on the Ethos-U, so the imx93 graph ends in int16: each pyramid level's last ADD (corner offsets +
anchor centres) takes its variable input through a QUANTIZE to int16 (128 times the int8 grid's resolution: the
same values) and its constant anchor centres as int16 (the same integers, zero point 0: exact), adds in int16 on
a grid of 2/32767 of the image, and the levels' CONCATENATION and the output's DEQUANTIZE follow in int16.

LiteRT cannot run a QUANTIZE from int8 to int16, so the export verifies a twin whose hand-over is a DEQUANTIZE +
QUANTIZE pair: the requantization by exactly 128 gives the same integers either way.
"""
from __future__ import annotations

import numpy as np

from ..opprofile import op_type_name
from .common import ExportError
from .tflite_file import model_bytes, model_object, signature_outputs

TAIL_RANGE = 2.0  # the int16 boxes cover [-2, 2] of the image side: steps of 6.1e-5
INT8_TO_INT16 = 128  # the hand-over's grid is this much finer than the int8 one: every int8 value lands on it


def with_int16_box_tail(data: bytes, *, twin: bool) -> bytes:
    """The int8 file `data` with its boxes output's tail in int16; `twin`: the int8 → int16 hand-overs as
    DEQUANTIZE + QUANTIZE, which LiteRT runs (for verification), instead of QUANTIZE, which Vela runs."""
    from ai_edge_litert import schema_py_generated as schema

    model = model_object(data)
    subgraph = model.subgraphs[0]
    producer = {int(t): op for op in subgraph.operators for t in op.outputs}
    codes = {op_type_name(model, op): int(op.opcodeIndex) for op in subgraph.operators}
    dequantize = producer.get(signature_outputs(data).get("boxes", -1))
    concat = producer.get(int(dequantize.inputs[0])) if dequantize is not None else None
    if (concat is None or op_type_name(model, dequantize) != "DEQUANTIZE"
            or op_type_name(model, concat) != "CONCATENATION" or "QUANTIZE" not in codes):
        raise ExportError("int16 box tail: the boxes output is not a DEQUANTIZE of the levels' CONCATENATION")
    readers: dict[int, int] = {}
    for op in subgraph.operators:
        for t in op.inputs:
            readers[int(t)] = readers.get(int(t), 0) + 1
    if any(readers.get(int(t), 0) != 1 for t in (*concat.inputs, *dequantize.inputs)):
        raise ExportError("int16 box tail: the boxes' levels feed other operators too, which int16 would break")

    def add_tensor(like, dtype, scale=None) -> int:
        tensor = schema.TensorT()
        suffix = b"_int16" if dtype == schema.TensorType.INT16 else b"_float"
        tensor.name, tensor.shape, tensor.type = like.name + suffix, list(like.shape), dtype
        model.buffers.append(schema.BufferT())
        tensor.buffer = len(model.buffers) - 1
        if scale is not None:
            tensor.quantization = schema.QuantizationParametersT()
            tensor.quantization.scale, tensor.quantization.zeroPoint = [scale], [0]
        subgraph.tensors.append(tensor)
        return len(subgraph.tensors) - 1

    def widen(index: int, scale: float) -> None:
        tensor = subgraph.tensors[index]
        tensor.type = schema.TensorType.INT16
        tensor.quantization.scale, tensor.quantization.zeroPoint = [scale], [0]

    handovers: dict[int, list[tuple[int, list[int], list[int]]]] = {}
    for level in concat.inputs:
        add = producer.get(int(level))
        if add is None or op_type_name(model, add) != "ADD":
            raise ExportError("int16 box tail: a level of the boxes output does not end in an ADD")
        inputs = []
        for source in (int(t) for t in add.inputs):
            tensor = subgraph.tensors[source]
            scale, zero = tensor.quantization.scale[0], tensor.quantization.zeroPoint[0]
            stored = model.buffers[tensor.buffer].data
            if stored is not None and len(stored):  # the anchor centres
                constant = add_tensor(tensor, schema.TensorType.INT16, scale)
                levels = np.asarray(stored, np.uint8).view(np.int8).astype(np.int16) - np.int16(zero)
                model.buffers[subgraph.tensors[constant].buffer].data = levels.view(np.uint8)
                inputs.append(constant)
                continue
            wide = add_tensor(tensor, schema.TensorType.INT16, scale / INT8_TO_INT16)
            steps = handovers.setdefault(id(add), [])
            if twin:
                real = add_tensor(tensor, schema.TensorType.FLOAT32)
                steps += [(codes["DEQUANTIZE"], [source], [real]), (codes["QUANTIZE"], [real], [wide])]
            else:
                steps.append((codes["QUANTIZE"], [source], [wide]))
            inputs.append(wide)
        add.inputs = inputs
        widen(int(level), TAIL_RANGE / 32767)
    widen(int(dequantize.inputs[0]), TAIL_RANGE / 32767)
    operators = []
    for op in subgraph.operators:
        for code, ins, outs in handovers.get(id(op), []):
            step = schema.OperatorT()
            step.opcodeIndex, step.inputs, step.outputs = code, ins, outs
            operators.append(step)
        operators.append(op)
    subgraph.operators = operators
    return model_bytes(model)
