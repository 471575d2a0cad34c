"""ONNX Runtime backend (CPU execution provider)."""
from __future__ import annotations

import os

import numpy as np

from .backend import Backend, one_line, parse_class_names, require
from .tensors import RAW_OUTPUTS, InputSpec, ModelError, RawOutputs, match_outputs

_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8, "tensor(int8)": np.int8,
}


class OnnxBackend(Backend):
    """Any one-input YOLACT-Edge ONNX model: NCHW or NHWC, float32/float16/uint8 input.

    Outputs are found by name, else by shape (a model with dynamic output dims is run once on a black image to
    learn them). Class names come from the `class_names` metadata entry (a JSON list) that the exporter writes.
    """

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, *, num_threads: int | None = None) -> None:
        ort = require("onnxruntime", "onnx")
        self.path = os.fspath(path)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no per-node warnings on stderr
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
            raise ModelError(f"{self.path}: not a usable ONNX model ({one_line(exc)})") from None

        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{self.path}: has {len(inputs)} inputs; a YOLACT-Edge model has one image input")
        meta = self.session.get_modelmeta().custom_metadata_map
        shape = list(inputs[0].shape)
        if not all(isinstance(d, int) for d in shape[1:]) and meta.get("input_size", "").isdigit():
            size = int(meta["input_size"])  # dynamic spatial dims: the size the model was exported for
            shape = [1, 3, size, size] if shape[1] == 3 else [1, size, size, 3]
        dtype = _ORT_TYPES.get(inputs[0].type)
        if dtype is None:
            raise ModelError(f"{self.path}: input {inputs[0].name!r} has type {inputs[0].type}; expected float or uint8")
        self.input_spec = InputSpec.from_shape(inputs[0].name, shape, dtype, self.path)

        outputs = self.session.get_outputs()
        shapes = {o.name: o.shape for o in outputs}
        types = {o.name: np.dtype(_ORT_TYPES[o.type]).name if o.type in _ORT_TYPES else o.type for o in outputs}
        if not all(isinstance(d, int) for s in shapes.values() for d in s):
            black = np.zeros((*self.input_spec.size, 3), np.uint8)
            probe = self.session.run(None, {self.input_spec.name: self.prepare(black)})
            shapes = {o.name: a.shape for o, a in zip(outputs, probe)}
        mapping = match_outputs(shapes, self.path)
        self._output_names = [mapping[role] for role in RAW_OUTPUTS]
        self.output_info = {role: (mapping[role], tuple(shapes[mapping[role]]), types[mapping[role]])
                            for role in RAW_OUTPUTS}
        num_classes = self.output_info["scores"][1][1]
        self.class_names_found = "class_names" in meta
        self.class_names = parse_class_names(meta.get("class_names"), num_classes, self.path)

    def invoke(self, tensor: np.ndarray) -> RawOutputs:
        outputs = self.session.run(self._output_names, {self.input_spec.name: tensor})
        return RawOutputs(*(np.asarray(o, dtype=np.float32) for o in outputs))
