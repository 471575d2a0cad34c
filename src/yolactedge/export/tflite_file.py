"""The TFLite file itself: its signature, output order, interface and op list, read without TensorFlow.

Everything here needs only LiteRT (`ai_edge_litert`: its interpreter and its generated flatbuffer schema), so
the runtime can read what the exporter wrote on a device that has no TensorFlow.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from ..modelmeta import METADATA_NAME
from .common import TFLITE_OUTPUT_ORDER, ExportError

SIGNATURE_KEY = "serving_default"
INPUT_NAME = "input"
TFLITE_FILE_IDENTIFIER = b"TFL3"


def model_object(data: bytes):
    """TFLite bytes → the schema's mutable object tree (ModelT)."""
    return _schema().ModelT.InitFromPackedBuf(bytearray(data), 0)


def model_bytes(model) -> bytes:
    """A ModelT → TFLite bytes (with the file identifier, as the converter writes them)."""
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_FILE_IDENTIFIER)
    return bytes(builder.Output())


def _schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _signature_def(model, key: str):
    """The signature named `key` of a read-only schema Model (or its only signature), else None."""
    signatures = [model.SignatureDefs(i) for i in range(model.SignatureDefsLength())]
    for signature in signatures:
        if (signature.SignatureKey() or b"").decode() == key:
            return signature
    return signatures[0] if len(signatures) == 1 else None


def signature_outputs(data: bytes, key: str = SIGNATURE_KEY) -> dict[str, int]:
    """{signature output name: tensor index} of the serving signature ({} when the file has none)."""
    return _signature_tensors(data, key, "Outputs")


def signature_inputs(data: bytes, key: str = SIGNATURE_KEY) -> dict[str, int]:
    """{signature input name: tensor index} of the serving signature ({} when the file has none)."""
    return _signature_tensors(data, key, "Inputs")


def _signature_tensors(data: bytes, key: str, side: str) -> dict[str, int]:
    signature = _signature_def(_schema().Model.GetRootAs(data, 0), key)
    if signature is None:
        return {}
    items = [getattr(signature, side)(i) for i in range(getattr(signature, side + "Length")())]
    return {item.Name().decode(): int(item.TensorIndex()) for item in items}


def subgraph_outputs(data: bytes, subgraph: int = 0) -> list[int]:
    """The tensor indices a subgraph outputs, in index order."""
    return [int(i) for i in _schema().Model.GetRootAs(data, 0).Subgraphs(subgraph).OutputsAsNumpy()]


def output_order(data: bytes) -> list[str]:
    """The main subgraph's outputs by index, named by the serving signature (the tensor index where unnamed)."""
    names = {index: name for name, index in signature_outputs(data).items()}
    return [names.get(index, str(index)) for index in subgraph_outputs(data)]


def reorder_outputs(data: bytes, order=TFLITE_OUTPUT_ORDER) -> bytes:
    """Permute the main subgraph's output list so output i is signature output order[i].

    Only the order of the output tensor ids changes: the graph, the tensors and the signature (which maps names
    to tensor ids) are untouched.
    """
    named = signature_outputs(data)
    missing = [name for name in order if name not in named]
    if missing:
        raise ExportError(f"TFLite model has no signature outputs {missing} (it has {sorted(named)})")
    current = subgraph_outputs(data)
    wanted = [named[name] for name in order]
    if sorted(current) != sorted(wanted):
        raise ExportError(f"TFLite outputs {current} do not match the signature's {wanted}")
    if current == wanted:
        return bytes(data)
    model = model_object(data)
    model.subgraphs[0].outputs = np.array(wanted, np.int32)
    return model_bytes(model)


def embed_metadata(data: bytes, metadata: dict, name: str = METADATA_NAME) -> bytes:
    """The model with `metadata` as UTF-8 JSON in its `Model.metadata` entry `name` (replaced if present), so the
    file describes itself (see `yolactedge.modelmeta.read_tflite_metadata`)."""
    schema = _schema()
    model = model_object(data)
    payload = np.frombuffer(json.dumps(metadata, separators=(",", ":")).encode("utf-8"), np.uint8)
    entries = list(model.metadata or [])
    entry = next((e for e in entries if _text(e.name) == name), None)
    if entry is None:
        entry = schema.MetadataT()
        entry.name = name
        entry.buffer = len(model.buffers)
        model.buffers.append(schema.BufferT())
        entries.append(entry)
    model.buffers[entry.buffer].data = payload
    model.metadata = entries
    return model_bytes(model)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def open_interpreter(model, threads: int = 2, *, delegates: bool = True):
    """LiteRT interpreter; `delegates=False` keeps XNNPACK out, so the op list is the file's own."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    source = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray)) else {"model_path": str(model)}
    return Interpreter(**source, num_threads=threads, experimental_op_resolver_type=resolver)


def inspect_tflite(model, precision: str | None = None, *, float_ops: tuple[str, ...] = (),
                   transposes: int | None = None, gathers: bool = False, float_box_decode: bool = False) -> dict:
    """Interface, output index order, op histogram and stray ops of a TFLite file (path or bytes).

    float_ops: operator types meant to run in float inside an int8 graph (with their DEQUANTIZE and QUANTIZE).
    transposes: how many TRANSPOSE the graph should have at most (default EXPECTED_TRANSPOSES; -1: any).
    gathers: GATHER ops belong to the graph (a video model's warped frame: onnx2tf's form of GridSample).
    float_box_decode: the boxes output is computed in float (the CPU target's decode).
    """
    data = bytes(model) if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
    interpreter = open_interpreter(data, threads=1, delegates=False)
    names = {index: name for name, index in signature_outputs(data).items()}
    input_names = {index: name for name, index in signature_inputs(data).items()}
    details = interpreter.get_input_details()
    inputs = [_tensor_info(d, INPUT_NAME if len(details) == 1 else input_names.get(d["index"], d["name"]))
              for d in details]
    inputs.sort(key=lambda i: i["name"] != INPUT_NAME)  # the image first
    outputs = [_tensor_info(d, names.get(d["index"], d["name"])) for d in interpreter.get_output_details()]
    ops = interpreter._get_ops_details()  # the only way to list a model's ops
    histogram = dict(sorted(Counter(op["op_name"] for op in ops).items(), key=lambda kv: (-kv[1], kv[0])))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    stray = stray_ops(ops, tensors, [d["index"] for d in interpreter.get_output_details()], precision,
                      float_ops=float_ops, transposes=EXPECTED_TRANSPOSES if transposes is None else transposes,
                      gathers=gathers, float_box_decode=float_box_decode)
    return {"inputs": inputs, "outputs": outputs, "output_order": [o["name"] for o in outputs],
            "op_histogram": histogram, "stray_ops": stray, "size_bytes": len(data)}


def float_box_tail(ops: list[dict], tensors: dict[int, dict], outputs: list[int]) -> set[int]:
    """Indices of the operators that compute the boxes output ([1, anchors, 4]) in float, back to the DEQUANTIZE
    of their int8 inputs (included)."""
    producer = {t: o for o in ops for t in o["outputs"]}
    pending = [t for t in outputs if len(tensors[t]["shape"]) == 3 and tensors[t]["shape"][-1] == 4]
    tail: set[int] = set()
    while pending:
        op = producer.get(pending.pop())
        if op is None or op["index"] in tail or not any(
                np.dtype(tensors[t]["dtype"]).name == "float32" for t in op["outputs"]):
            continue
        tail.add(op["index"])
        if op["op_name"] != "DEQUANTIZE":
            pending.extend(t for t in op["inputs"] if t >= 0)
    return tail


def _tensor_info(detail: dict, name: str) -> dict:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    info = {"name": name, "tensor": detail["name"], "index": int(detail["index"]),
            "shape": [int(v) for v in detail["shape"]], "dtype": np.dtype(detail["dtype"]).name}
    if scale:
        info["quantization"] = [float(scale), int(zero_point)]
    return info


EXPECTED_TRANSPOSES = 1  # scores: [1, A, C] → [1, C, A], part of the model's contract


def stray_ops(ops: list[dict], tensors: dict[int, dict], outputs: list[int], precision: str | None, *,
              float_ops: tuple[str, ...] = (), transposes: int = EXPECTED_TRANSPOSES,
              gathers: bool = False, float_box_decode: bool = False) -> list[str]:
    """Ops an integer graph should not have: non-builtins, gathers, extra transposes, float islands.

    A DEQUANTIZE is expected only where it produces a model output or feeds `float_ops`; a QUANTIZE only from the
    float input (int16x8), from one of `float_ops`, or as an int8→int8 requantisation (e.g. before a
    concatenation). `transposes` -1 accepts any number (the Ethos-U graph's separable upsampling has several).
    `float_box_decode`: the float operators that compute the boxes output, and the DEQUANTIZE that feed them, are
    expected too (the CPU target's float decode).
    """
    found = []
    for op in ops:
        name = op["op_name"]
        if name.startswith("Flex") or name == "CUSTOM":
            found.append(f"{name} (not a TFLite builtin)")
        elif name in ("GATHER", "GATHER_ND") and not gathers:
            found.append(name)
    count = sum(op["op_name"] == "TRANSPOSE" for op in ops)
    if 0 <= transposes < count:
        found.append(f"{count} TRANSPOSE ({transposes} expected, for scores)")
    if precision not in ("int8", "int16x8"):
        return found
    graph_outputs = set(outputs)
    float_types = ("float32", "float16")
    decode = float_box_tail(ops, tensors, outputs) if float_box_decode else set()
    producer = {t: o["op_name"] for o in ops for t in o["outputs"]}
    consumers: dict[int, set[str]] = {}
    for o in ops:
        for t in o["inputs"]:
            consumers.setdefault(t, set()).add(o["op_name"])
    for op in ops:
        name, ins, outs = op["op_name"], list(op["inputs"]), list(op["outputs"])
        if op["index"] in decode:
            continue
        if name == "DEQUANTIZE" and not set(outs) <= graph_outputs:
            if not consumers.get(outs[0]) or not consumers[outs[0]] <= set(float_ops):
                found.append(f"DEQUANTIZE mid-graph (tensor {tensors[outs[0]]['name']})")
        elif name == "QUANTIZE" and ins and np.dtype(tensors[ins[0]]["dtype"]).name in float_types:
            producer_is_input = ins[0] not in producer
            if not (producer_is_input and precision == "int16x8") and producer.get(ins[0]) not in float_ops:
                found.append(f"QUANTIZE from float mid-graph (tensor {tensors[ins[0]]['name']})")
        elif name != "DEQUANTIZE" and name not in float_ops and any(
            np.dtype(tensors[t]["dtype"]).name in float_types for t in outs if t >= 0
        ):
            found.append(f"{name} computes in float")
    return found
