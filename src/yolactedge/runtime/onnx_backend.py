"""ONNX Runtime backend (CPU execution provider), for image models and a video model's key/warped graph pair."""
from __future__ import annotations

import os

import numpy as np

from .backend import Backend, one_line, parse_class_names, require
from .tensors import (
    RAW_OUTPUTS, VIDEO_GRAPH_KEY, VIDEO_MEMORY, InputSpec, ModelError, RawOutputs, match_outputs, memory_sources,
    existing_warped_graph,
)

_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8, "tensor(int8)": np.int8,
}


class OnnxBackend(Backend):
    """Any one-input YOLACT-Edge ONNX model: NCHW or NHWC, float32/float16/uint8 input.

    Outputs are found by name, else by shape (a model with dynamic output dims is run once on a black image to
    learn them). Class names come from the `class_names` metadata entry (a JSON list) that the exporter writes.
    A video model's key-frame graph runs as an image model, and in video mode (`open_video`) with its
    `<stem>_warp.onnx` partner; the partner's input names say which key outputs it takes (`memory_sources`: a
    pair that carries prototypes also feeds the key frame's `proto` to the warped graph's `key_proto`).
    """

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, *, num_threads: int | None = None) -> None:
        self.path = os.fspath(path)
        self._num_threads = num_threads
        self.session = self._open_session(self.path)
        meta = self.session.get_modelmeta().custom_metadata_map
        self._video_graph = meta.get(VIDEO_GRAPH_KEY)
        if self._video_graph == "warped":
            raise ModelError(f"{self.path}: the warped-frame graph of a video model; open its key-frame graph "
                             f"({self.path.removesuffix('.onnx').removesuffix('_warp')}.onnx)")
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{self.path}: has {len(inputs)} inputs; a YOLACT-Edge model has one image input")
        shape = list(inputs[0].shape)
        if not all(isinstance(d, int) for d in shape[1:]) and meta.get("input_size", "").isdigit():
            size = int(meta["input_size"])  # dynamic spatial dims: the size the model was exported for
            shape = [1, 3, size, size] if shape[1] == 3 else [1, size, size, 3]
        dtype = _ORT_TYPES.get(inputs[0].type)
        if dtype is None:
            raise ModelError(f"{self.path}: input {inputs[0].name!r} has type {inputs[0].type}; expected float or uint8")
        self.input_spec = InputSpec.from_shape(inputs[0].name, shape, dtype, self.path)

        memory = VIDEO_MEMORY if self._video_graph == "key" else ()
        outputs = [o for o in self.session.get_outputs() if o.name not in memory]
        shapes = {o.name: o.shape for o in outputs}
        types = {o.name: np.dtype(_ORT_TYPES[o.type]).name if o.type in _ORT_TYPES else o.type for o in outputs}
        if not all(isinstance(d, int) for s in shapes.values() for d in s):
            black = np.zeros((*self.input_spec.size, 3), np.uint8)
            probe = self.session.run([o.name for o in outputs], {self.input_spec.name: self.prepare(black)})
            shapes = {o.name: a.shape for o, a in zip(outputs, probe)}
        mapping = match_outputs(shapes, self.path)
        self._output_names = [mapping[role] for role in RAW_OUTPUTS]
        self.output_info = {role: (mapping[role], tuple(shapes[mapping[role]]), types[mapping[role]])
                            for role in RAW_OUTPUTS}
        num_classes = self.output_info["scores"][1][1]
        self.class_names_found = "class_names" in meta
        self.class_names = parse_class_names(meta.get("class_names"), num_classes, self.path)

    def _open_session(self, path: str):
        ort = require("onnxruntime", "onnx")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no per-node warnings on stderr
        if self._num_threads is not None:
            options.intra_op_num_threads = self._num_threads
            options.inter_op_num_threads = 1
        try:
            return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
            raise ModelError(f"{path}: not a usable ONNX model ({one_line(exc)})") from None

    def invoke(self, tensor: np.ndarray) -> RawOutputs:
        outputs = self.session.run(self._output_names, {self.input_spec.name: tensor})
        return RawOutputs(*(np.asarray(o, dtype=np.float32) for o in outputs))

    def open_video(self) -> None:
        """Open the warped-frame partner (`<stem>_warp.onnx` beside the key-frame graph), once."""
        if getattr(self, "warped_session", None) is not None:
            return
        partner = existing_warped_graph(self.path, self._video_graph, "ONNX")
        session = self._open_session(str(partner))
        inputs = {i.name: i.shape for i in session.get_inputs()}
        sources = memory_sources(inputs, self.input_spec.name, str(partner))
        key_shapes = {o.name: o.shape for o in self.session.get_outputs()}
        key_shapes.update((role, key_shapes[self._output_names[i]]) for i, role in enumerate(RAW_OUTPUTS))
        for name, source in sources.items():
            if inputs[name] != key_shapes.get(source):
                raise ModelError(f"{partner}: input {name} {inputs[name]} does not fit the key frame's {source} "
                                 f"{key_shapes.get(source)}; the two files come from different exports")
        self.warped_session, self._memory_sources = session, sources

    def invoke_key(self, tensor: np.ndarray) -> tuple[RawOutputs, dict[str, np.ndarray]]:
        values = self.session.run([*self._output_names, *VIDEO_MEMORY], {self.input_spec.name: tensor})
        by_name = dict(zip((*RAW_OUTPUTS, *VIDEO_MEMORY), values))
        memory = {name: by_name[source] for name, source in self._memory_sources.items()}
        return RawOutputs(*(np.asarray(o, dtype=np.float32) for o in values[:len(RAW_OUTPUTS)])), memory

    def invoke_warped(self, tensor: np.ndarray, memory: dict[str, np.ndarray]) -> RawOutputs:
        outputs = self.warped_session.run(self._output_names, {self.input_spec.name: tensor, **memory})
        return RawOutputs(*(np.asarray(o, dtype=np.float32) for o in outputs))
