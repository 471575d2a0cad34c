"""LiteRT (TensorFlow Lite) backend: fp32, fp16, int8 and int16x8 .tflite files, XNNPACK or an external delegate.

The interpreter comes from `ai_edge_litert` (else `tflite_runtime`, which embedded Linux images such as NXP's
ship). Class names come from the `<model>.json` sidecar when there is one, else from the metadata the exporter
embeds in the file (`yolactedge.modelmeta`). Inputs and outputs are read through the model's signature (keys boxes/scores/masks/proto as our exporter
writes them), else the plain tensor list; either way the roles are found by name, else by shape, never by index.
A video model's key-frame file runs as an image model, and in video mode (`open_video`) with its
`<stem>_warp.tflite` partner.
"""
from __future__ import annotations

import ctypes
import json
import os
import warnings
from pathlib import Path

import numpy as np

from ..export.quiet import quiet_fds
from ..modelmeta import MetadataError, read_tflite_metadata
from .backend import Backend, one_line, parse_class_names
from .tensors import (
    RAW_OUTPUTS, VIDEO_GRAPH_KEY, WARPED_GRAPH_SUFFIX, InputSpec, ModelError, RawOutputs, dequantize, match_outputs,
    existing_warped_graph, memory_sources, quantize,
)


def _interpreter_module():
    for module in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        try:
            return __import__(module, fromlist=["Interpreter"])
        except ImportError:
            continue
    raise ImportError("the litert backend needs ai-edge-litert (or tflite_runtime): pip install 'yolactedge[litert]'")


class LiteRTBackend(Backend):
    """num_threads: XNNPACK/interpreter threads. delegate: path (or library name) of an external delegate such as
    i.MX 8M Plus's libvx_delegate.so; without one, LiteRT's default XNNPACK CPU delegate is used."""

    name = "litert"

    def __init__(self, path: str | os.PathLike, *, num_threads: int | None = None,
                 delegate: str | os.PathLike | None = None) -> None:
        self.path = os.fspath(path)
        self.delegate = os.fspath(delegate) if delegate is not None else None
        self._num_threads = num_threads
        self.interpreter = self._open_interpreter(self.path)
        self._metadata = self._read_metadata(self.path)
        self._video_graph = self._metadata.get(VIDEO_GRAPH_KEY)
        if self._video_graph == "warped":
            key = Path(self.path).with_name(Path(self.path).stem.removesuffix(WARPED_GRAPH_SUFFIX) + ".tflite")
            raise ModelError(f"{self.path}: the warped-frame graph of a video model; open its key-frame graph "
                             f"({key.name})")
        self._warped = None

        signatures = self.interpreter.get_signature_list()
        if signatures:
            key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
            self._runner = self.interpreter.get_signature_runner(key)
            inputs, outputs = self._runner.get_input_details(), self._runner.get_output_details()
        else:  # no signature: the tensors' own names
            self._runner = None
            inputs = {d["name"]: d for d in self.interpreter.get_input_details()}
            outputs = {d["name"]: d for d in self.interpreter.get_output_details()}
        if len(inputs) != 1:
            raise ModelError(f"{self.path}: has {len(inputs)} inputs; a YOLACT-Edge model has one image input")
        (input_name, detail), = inputs.items()
        scale, zero_point = detail["quantization"]
        self.input_spec = InputSpec.from_shape(input_name, list(detail["shape"]), detail["dtype"], self.path,
                                               scale=scale, zero_point=zero_point)
        self._input_index = detail["index"]

        mapping = match_outputs({name: d["shape"] for name, d in outputs.items()}, self.path)
        chosen = {role: outputs[mapping[role]] for role in RAW_OUTPUTS}
        # (signature key or tensor name, tensor index, scale, zero point) per role, in RAW_OUTPUTS order
        self._outputs = [(mapping[role], d["index"], *d["quantization"]) for role, d in chosen.items()]
        self.output_info = {role: (mapping[role], tuple(int(n) for n in d["shape"]), np.dtype(d["dtype"]).name)
                            for role, d in chosen.items()}
        num_classes = self.output_info["scores"][1][1]
        names = self._sidecar_class_names()
        if names is None:
            names = self._embedded_class_names()
        self.class_names_found = names is not None
        self.class_names = parse_class_names(names, num_classes, self.path)

    def _open_interpreter(self, path: str):
        """A ready LiteRT interpreter on `path` with this backend's threads and delegate."""
        lite = _interpreter_module()
        delegates = [self._load_delegate(lite, self.delegate)] if self.delegate else None
        try:
            interpreter = lite.Interpreter(model_path=path, num_threads=self._num_threads,
                                           experimental_delegates=delegates)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{path}: not a readable TFLite model ({one_line(exc)})") from None
        try:
            with quiet_fds():  # LiteRT logs "INFO: Created TensorFlow Lite XNNPACK delegate" here
                interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:  # e.g. an op the runtime or the delegate cannot prepare
            hint = "; it needs its delegate (delegate=...)" if "custom op" in str(exc) and not delegates else ""
            raise ModelError(f"{path}: LiteRT cannot prepare this model ({one_line(exc)}){hint}") from None
        return interpreter

    @staticmethod
    def _read_metadata(path: str) -> dict:
        """The exporter's embedded metadata ({} when the file has none or it is unreadable, with a warning)."""
        try:
            return read_tflite_metadata(path) or {}
        except MetadataError as exc:
            warnings.warn(f"{path}: ignoring {exc}", stacklevel=4)
            return {}

    @staticmethod
    def _load_delegate(lite, delegate: str):
        # Probe with ctypes first: load_delegate's own failure paths also print a stray traceback from __del__.
        try:
            library = ctypes.CDLL(delegate)
        except OSError as exc:
            raise ModelError(f"cannot load delegate {delegate}: {one_line(exc)}") from None
        if not hasattr(library, "tflite_plugin_create_delegate"):
            raise ModelError(f"cannot load delegate {delegate}: not a TFLite external delegate "
                             f"(no tflite_plugin_create_delegate symbol)")
        try:
            return lite.load_delegate(delegate)
        except (ValueError, OSError, RuntimeError, AttributeError) as exc:
            raise ModelError(f"cannot load delegate {delegate}: {one_line(exc)}") from None

    def _sidecar_class_names(self) -> list | None:
        """The class names in `<model>.json` (key `class_names`, or `config.class_names`), if any."""
        sidecar = Path(self.path).with_suffix(".json")
        if not sidecar.is_file():
            return None
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
            names = data.get("class_names", data.get("config", {}).get("class_names"))
        except (OSError, ValueError, AttributeError) as exc:
            warnings.warn(f"{sidecar}: ignoring unreadable sidecar ({one_line(exc)})", stacklevel=3)
            return None
        return names

    def _embedded_class_names(self) -> list | None:
        """The class names the exporter embedded in the file's `yolactedge` metadata, if any."""
        return self._metadata.get("class_names")

    def invoke(self, tensor: np.ndarray) -> RawOutputs:
        if self._runner is not None:
            results = self._runner(**{self.input_spec.name: tensor})
            return RawOutputs(*(dequantize(results[name], scale, zero_point)
                                for name, _, scale, zero_point in self._outputs))
        self.interpreter.set_tensor(self._input_index, tensor)
        self.interpreter.invoke()
        return RawOutputs(*(dequantize(self.interpreter.get_tensor(index), scale, zero_point)
                            for _, index, scale, zero_point in self._outputs))

    # --- video mode ---------------------------------------------------------------------------------------------

    def open_video(self) -> None:
        """Open the warped-frame partner (`<stem>_warp.tflite` beside the key-frame file), once, and plan how each
        of its memory inputs (by its own name, `tensors.memory_sources`) is fed from a key-frame output."""
        if self._warped is not None:
            return
        partner = existing_warped_graph(self.path, self._video_graph, "TFLite")
        metadata = self._read_metadata(str(partner))
        if metadata.get(VIDEO_GRAPH_KEY) != "warped":
            raise ModelError(f"{partner}: not a video model's warped-frame graph (its metadata does not say so); "
                             "export the video checkpoint again")
        for key in ("video_pair", "preset", "input_size", "precision"):
            if metadata.get(key) != self._metadata.get(key):
                raise ModelError(f"{partner}: the warped-frame graph of another export ({key} "
                                 f"{metadata.get(key)!r}, {Path(self.path).name} has {self._metadata.get(key)!r}); "
                                 "use the two files one export wrote together")
        if self._runner is None:
            raise ModelError(f"{self.path}: video mode needs the files' signatures (export them with yolactedge)")
        runner = self._open_interpreter(str(partner)).get_signature_runner()
        inputs, outputs = runner.get_input_details(), runner.get_output_details()
        image = self.input_spec.name if self.input_spec.name in inputs else None
        if image is None or list(inputs[image]["shape"]) != list(self._runner.get_input_details()[image]["shape"]):
            raise ModelError(f"{partner}: its image input does not match {Path(self.path).name}'s; use the two files "
                             "one export wrote together")
        key_outputs = self._runner.get_output_details()
        sources = memory_sources(inputs, image, str(partner))
        plan = []
        for name, source in sources.items():
            if source not in key_outputs:
                raise ModelError(f"{partner}: the warped-frame graph takes {name}, which {Path(self.path).name} does "
                                 "not output; export the video model again (both files together)")
            given, wanted = key_outputs[source], inputs[name]
            if list(given["shape"]) != list(wanted["shape"]):
                raise ModelError(f"{partner}: memory input {name} is {list(wanted['shape'])}, the key frame outputs "
                                 f"{list(given['shape'])}; use the two files one export wrote together")
            plan.append((name, source, *given["quantization"], np.dtype(wanted["dtype"]), *wanted["quantization"]))
        mapping = match_outputs({name: d["shape"] for name, d in outputs.items()}, str(partner))
        self._warped_outputs = [(mapping[role], *outputs[mapping[role]]["quantization"]) for role in RAW_OUTPUTS]
        self._memory_plan, self._warped = plan, runner

    def invoke_key(self, tensor: np.ndarray) -> tuple[RawOutputs, dict[str, np.ndarray]]:
        """The four outputs, and the memory already in the warped-frame file's input types (quantized once here
        for its int8 inputs, not in every warped frame)."""
        results = self._runner(**{self.input_spec.name: tensor})
        raw = RawOutputs(*(dequantize(results[name], scale, zero_point)
                           for name, _, scale, zero_point in self._outputs))
        memory = {}
        for name, source, scale, zero_point, dtype, in_scale, in_zero_point in self._memory_plan:
            values = results[source]
            if values.dtype != dtype:
                values = dequantize(values, scale, zero_point)
                values = (quantize(values, in_scale, in_zero_point, dtype) if dtype.kind in "iu"
                          else values.astype(dtype))
            memory[name] = values
        return raw, memory

    def invoke_warped(self, tensor: np.ndarray, memory: dict[str, np.ndarray]) -> RawOutputs:
        results = self._warped(**{self.input_spec.name: tensor, **memory})
        return RawOutputs(*(dequantize(results[name], scale, zero_point)
                            for name, scale, zero_point in self._warped_outputs))
