"""The TFLite file itself: its signature, output order, interface and op list, read without TensorFlow.

Everything here needs only LiteRT (`ai_edge_litert`: its interpreter and its generated flatbuffer schema), so
the runtime can read what the exporter wrote on a device that has no TensorFlow.
"""
from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import numpy as np

from .common import TFLITE_OUTPUT_ORDER, ExportError

SIGNATURE_KEY = "serving_default"
INPUT_NAME = "input"
TFLITE_FILE_IDENTIFIER = b"TFL3"


def model_object(data: bytes):
    """TFLite bytes → the schema's mutable object tree (ModelT)."""
    from ai_edge_litert import schema_py_generated as schema

    return schema.ModelT.InitFromPackedBuf(bytearray(data), 0)


def model_bytes(model) -> bytes:
    """A ModelT → TFLite bytes (with the file identifier, as the converter writes them)."""
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_FILE_IDENTIFIER)
    return bytes(builder.Output())


class _Flatbuffer:
    """Just enough of the FlatBuffers wire format to read TFLite tables (Model, SubGraph, SignatureDef)."""

    def __init__(self, data) -> None:
        self.buf = data

    def u32(self, pos: int) -> int:
        return struct.unpack_from("<I", self.buf, pos)[0]

    def root(self) -> int:
        return self.u32(0)

    def field(self, table: int, index: int) -> int | None:
        vtable = table - struct.unpack_from("<i", self.buf, table)[0]
        vtable_size = struct.unpack_from("<H", self.buf, vtable)[0]
        slot = 4 + 2 * index
        if slot >= vtable_size:
            return None
        offset = struct.unpack_from("<H", self.buf, vtable + slot)[0]
        return table + offset if offset else None

    def vector(self, table: int, index: int) -> tuple[int, int]:
        pos = self.field(table, index)
        if pos is None:
            return 0, 0
        start = pos + self.u32(pos)
        return start + 4, self.u32(start)

    def tables(self, table: int, index: int) -> list[int]:
        start, n = self.vector(table, index)
        return [start + 4 * i + self.u32(start + 4 * i) for i in range(n)]

    def ints(self, table: int, index: int) -> list[int]:
        start, n = self.vector(table, index)
        return list(struct.unpack_from(f"<{n}i", self.buf, start)) if n else []

    def string(self, table: int, index: int) -> str | None:
        start, n = self.vector(table, index)
        return bytes(self.buf[start:start + n]).decode() if start else None

    def scalar(self, table: int, index: int, fmt: str, default=0):
        pos = self.field(table, index)
        return struct.unpack_from(fmt, self.buf, pos)[0] if pos is not None else default


# TFLite schema field numbers.
_MODEL_SUBGRAPHS, _MODEL_SIGNATURE_DEFS = 2, 7
_SUBGRAPH_INPUTS, _SUBGRAPH_OUTPUTS = 1, 2
_SIGNATURE_INPUTS, _SIGNATURE_OUTPUTS, _SIGNATURE_KEY, _SIGNATURE_SUBGRAPH = 0, 1, 2, 4
_TENSORMAP_NAME, _TENSORMAP_INDEX = 0, 1


def _signature(fb: _Flatbuffer, key: str = SIGNATURE_KEY) -> int | None:
    signatures = fb.tables(fb.root(), _MODEL_SIGNATURE_DEFS)
    for sig in signatures:
        if fb.string(sig, _SIGNATURE_KEY) == key:
            return sig
    return signatures[0] if len(signatures) == 1 else None


def signature_outputs(data: bytes, key: str = SIGNATURE_KEY) -> dict[str, int]:
    """{signature output name: tensor index} of the serving signature ({} when the file has none)."""
    fb = _Flatbuffer(data)
    sig = _signature(fb, key)
    if sig is None:
        return {}
    return {fb.string(t, _TENSORMAP_NAME): fb.scalar(t, _TENSORMAP_INDEX, "<I") for t in fb.tables(sig, _SIGNATURE_OUTPUTS)}


def subgraph_outputs(data: bytes, subgraph: int = 0) -> list[int]:
    fb = _Flatbuffer(data)
    return fb.ints(fb.tables(fb.root(), _MODEL_SUBGRAPHS)[subgraph], _SUBGRAPH_OUTPUTS)


def reorder_outputs(data: bytes, order=TFLITE_OUTPUT_ORDER) -> bytes:
    """Permute the main subgraph's output list so output i is signature output order[i].

    Only the int32 tensor ids of one vector change places, in place: the graph, the tensors and the signature
    (which maps names to tensor ids) are untouched, so the bytes stay a valid model of the same size.
    """
    buf = bytearray(data)
    fb = _Flatbuffer(buf)
    named = signature_outputs(buf)
    missing = [name for name in order if name not in named]
    if missing:
        raise ExportError(f"TFLite model has no signature outputs {missing} (it has {sorted(named)})")
    subgraph = fb.tables(fb.root(), _MODEL_SUBGRAPHS)[0]
    start, n = fb.vector(subgraph, _SUBGRAPH_OUTPUTS)
    current = list(struct.unpack_from(f"<{n}i", buf, start))
    wanted = [named[name] for name in order]
    if sorted(current) != sorted(wanted):
        raise ExportError(f"TFLite outputs {current} do not match the signature's {wanted}")
    struct.pack_into(f"<{n}i", buf, start, *wanted)
    return bytes(buf)


def open_interpreter(model, threads: int = 2, *, delegates: bool = True):
    """LiteRT interpreter; `delegates=False` keeps XNNPACK out, so the op list is the file's own."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    source = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray)) else {"model_path": str(model)}
    return Interpreter(**source, num_threads=threads, experimental_op_resolver_type=resolver)


def inspect_tflite(model, precision: str | None = None) -> dict:
    """Interface, output index order, op histogram and stray ops of a TFLite file (path or bytes)."""
    data = bytes(model) if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
    interpreter = open_interpreter(data, threads=1, delegates=False)
    names = {index: name for name, index in signature_outputs(data).items()}
    inputs = [_tensor_info(d, INPUT_NAME if len(interpreter.get_input_details()) == 1 else d["name"])
              for d in interpreter.get_input_details()]
    outputs = [_tensor_info(d, names.get(d["index"], d["name"])) for d in interpreter.get_output_details()]
    ops = interpreter._get_ops_details()  # the only way to list a model's ops
    histogram = dict(sorted(Counter(op["op_name"] for op in ops).items(), key=lambda kv: (-kv[1], kv[0])))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    stray = stray_ops(ops, tensors, [d["index"] for d in interpreter.get_output_details()], precision)
    return {"inputs": inputs, "outputs": outputs, "output_order": [o["name"] for o in outputs],
            "op_histogram": histogram, "stray_ops": stray, "size_bytes": len(data)}


def _tensor_info(detail: dict, name: str) -> dict:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    info = {"name": name, "tensor": detail["name"], "index": int(detail["index"]),
            "shape": [int(v) for v in detail["shape"]], "dtype": np.dtype(detail["dtype"]).name}
    if scale:
        info["quantization"] = [float(scale), int(zero_point)]
    return info


EXPECTED_TRANSPOSES = 1  # scores: [1, A, C] → [1, C, A], part of the model's contract


def stray_ops(ops: list[dict], tensors: dict[int, dict], outputs: list[int], precision: str | None) -> list[str]:
    """Ops an integer graph should not have: non-builtins, gathers, extra transposes, float islands.

    A DEQUANTIZE is expected only where it produces a model output; a QUANTIZE only from the float input
    (int16x8) or as an int8→int8 requantisation (e.g. before a concatenation).
    """
    found = []
    for op in ops:
        name = op["op_name"]
        if name.startswith("Flex") or name == "CUSTOM":
            found.append(f"{name} (not a TFLite builtin)")
        elif name in ("GATHER", "GATHER_ND"):
            found.append(name)
    count = sum(op["op_name"] == "TRANSPOSE" for op in ops)
    if count > EXPECTED_TRANSPOSES:
        found.append(f"{count} TRANSPOSE ({EXPECTED_TRANSPOSES} expected, for scores)")
    if precision not in ("int8", "int16x8"):
        return found
    graph_outputs = set(outputs)
    float_types = ("float32", "float16")
    for op in ops:
        name, ins, outs = op["op_name"], list(op["inputs"]), list(op["outputs"])
        if name == "DEQUANTIZE" and not set(outs) <= graph_outputs:
            found.append(f"DEQUANTIZE mid-graph (tensor {tensors[outs[0]]['name']})")
        elif name == "QUANTIZE" and ins and np.dtype(tensors[ins[0]]["dtype"]).name in float_types:
            producer_is_input = not any(ins[0] in o["outputs"] for o in ops)
            if not (producer_is_input and precision == "int16x8"):
                found.append(f"QUANTIZE from float mid-graph (tensor {tensors[ins[0]]['name']})")
        elif name != "DEQUANTIZE" and any(
            np.dtype(tensors[t]["dtype"]).name in float_types for t in outs if t >= 0
        ):
            found.append(f"{name} computes in float")
    return found
