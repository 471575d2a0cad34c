"""Fast calibration: min/max of every tensor from one multi-threaded LiteRT run, handed to TensorFlow's quantizer.

TensorFlow's own calibration runs single-threaded reference kernels (~4 s per 550x550 image here, and twice for
int16x8); this collects the same statistics with XNNPACK and patches them in where TensorFlow's calibrator puts
them, so the quantization itself stays TensorFlow's.
"""
from __future__ import annotations

import contextlib
import gc
import inspect
import time

import numpy as np

from ..opprofile import is_constant
from .box_ranges import box_ranges
from .calibration import progress_bar
from .common import one_line
from .tflite_file import open_interpreter, model_bytes, model_object, signature_outputs


@contextlib.contextmanager
def fast_calibration(samples, state: dict, *, progress: bool = True, file=None, threads: int = 2):
    """Replace TensorFlow's calibration (single-threaded reference kernels: ~4 s per 550x550 image here, and
    done twice for int16x8) by one LiteRT run with XNNPACK on `threads` threads over `samples` (an image array,
    or {input name: array} per sample for a model of several inputs) that makes every tensor the
    calibrator would log a model output and keeps the global min/max of each, as TensorFlow's calibrator does.

    The statistics go into the model exactly where TensorFlow's calibrator puts them (each tensor's
    quantization min/max) and TensorFlow's own quantizers take it from there (the MLIR one for int8, the
    deprecated one that int16x8 needs), so the rest of the conversion is TensorFlow's. The box decode's ranges
    are ours (`box_ranges`): the decoded boxes get the image, instead of the anchors' whole reach (about
    [-0.35, 1.35]), so the quantized boxes saturate at the image border, which clamps them as post-processing
    would, with no extra operator, and an int8 step is 1/255 of the image side instead of about 1/150; for int16x8
    the decode's intermediates get what the box regressions' ranges allow. If collecting the
    statistics fails, TensorFlow's calibrator runs instead and state["error"] says why; state["fast"] is True
    when the fast path produced the statistics, state["seconds"] is its time.
    """
    from tensorflow.lite.python.optimize import calibrator

    original_calibrate = calibrator.Calibrator.calibrate
    original_quantize = calibrator.Calibrator.calibrate_and_quantize
    quantize_signature = inspect.signature(original_quantize)

    def calibrated_model(self, propagate: bool) -> bytes:
        return _calibrated_once(self, samples, state, propagate, progress=progress, file=file, threads=threads)

    def calibrate(self, dataset_gen):
        try:
            return calibrated_model(self, propagate=False)  # int8 (see box_ranges)
        except Exception as exc:  # fall back to the slow, reference path
            state["error"] = one_line(exc)
            return original_calibrate(self, dataset_gen)

    def calibrate_and_quantize(self, dataset_gen, *args, **kwargs):
        try:
            bound = quantize_signature.bind(self, dataset_gen, *args, **kwargs)
            bound.apply_defaults()
            a = bound.arguments
            codes = [np.dtype(a[k].as_numpy_dtype()).num
                     for k in ("input_type", "output_type", "activations_type", "bias_type")]
            calibrated = calibrated_model(self, propagate=True)  # int16x8
        except Exception as exc:  # fall back to the slow, reference path (on per-op constants too)
            state["error"] = one_line(exc)
            state["fast"] = False
            return _quantize_per_op(original_quantize, self, dataset_gen, *args, **kwargs)
        # The legacy quantizer (int16x8's) quantizes a constant shared by several ops once, with the first op's
        # input scale in its bias: the prediction head, shared by every FPN level, would get wrong biases.
        quantizer = calibrator.Calibrator(unshare_constants(calibrated))  # quantizes with the model's ranges
        return quantizer._calibrator.QuantizeModel(  # what calibrate_and_quantize itself calls
            codes[0], codes[1], a["allow_float"], codes[2], codes[3], a["disable_per_channel"],
            a["disable_per_channel_quantization_for_dense_layers"],
        )

    calibrator.Calibrator.calibrate = calibrate
    calibrator.Calibrator.calibrate_and_quantize = calibrate_and_quantize
    try:
        yield
    finally:
        calibrator.Calibrator.calibrate = original_calibrate
        calibrator.Calibrator.calibrate_and_quantize = original_quantize


@contextlib.contextmanager
def per_op_constants():
    """TensorFlow's own calibration for int16x8, on a model whose shared constants were copied per op (see
    `unshare_constants`): what `fast_calibration` does when it is not used."""
    from tensorflow.lite.python.optimize import calibrator

    original_quantize = calibrator.Calibrator.calibrate_and_quantize

    def calibrate_and_quantize(self, dataset_gen, *args, **kwargs):
        return _quantize_per_op(original_quantize, self, dataset_gen, *args, **kwargs)

    calibrator.Calibrator.calibrate_and_quantize = calibrate_and_quantize
    try:
        yield
    finally:
        calibrator.Calibrator.calibrate_and_quantize = original_quantize


def _quantize_per_op(original_quantize, calibrator_object, dataset_gen, *args, **kwargs):
    """TensorFlow's calibrate_and_quantize on a fresh calibrator over the model with per-op constants."""
    unshared = type(calibrator_object)(unshare_constants(calibrator_object._model_content))
    return original_quantize(unshared, dataset_gen, *args, **kwargs)


def _calibrated_once(calibrator_object, samples, state: dict, propagate: bool, **options) -> bytes:
    """The calibrator's model with min/max statistics (the box decode's from `box_ranges`); the samples run once
    per calibrator (int16x8 asks twice: TensorFlow's calibrate, then calibrate_and_quantize)."""
    content = calibrator_object._model_content
    stats = getattr(calibrator_object, "_yolactedge_minmax", None)
    if stats is None:
        start = time.perf_counter()
        stats = calibrator_object._yolactedge_minmax = collect_minmax(content, samples, **options)
        state["fast"] = True
        state["seconds"] = state.get("seconds", 0.0) + time.perf_counter() - start
    model = model_object(content)
    boxes = signature_outputs(content).get("boxes")
    return write_minmax(model, box_ranges(model, stats, boxes, propagate=propagate))


def unshare_constants(data: bytes) -> bytes:
    """The model with every constant buffer used by more than one op input copied, one copy per further use, so
    each op's weights and bias can be quantized for that op's own input range."""
    model = model_object(data)
    subgraph = model.subgraphs[0]
    used: set[int] = set()
    for op in subgraph.operators:
        inputs = [int(i) for i in op.inputs]
        for k, index in enumerate(inputs):
            tensor = subgraph.tensors[index] if index >= 0 else None
            if tensor is None or not is_constant(model, tensor):
                continue
            if tensor.buffer in used:
                inputs[k] = _copy_constant(model, tensor)
            else:
                used.add(tensor.buffer)
        op.inputs = np.array(inputs, np.int32)
    return model_bytes(model)


def _copy_constant(model, tensor) -> int:
    """A new tensor with its own copy of `tensor`'s buffer → its index in the main subgraph."""
    import copy

    from ai_edge_litert import schema_py_generated as schema

    duplicate = copy.deepcopy(tensor)
    buffer = schema.BufferT()
    buffer.data = np.array(model.buffers[tensor.buffer].data, copy=True)
    duplicate.buffer = len(model.buffers)
    model.buffers.append(buffer)
    model.subgraphs[0].tensors.append(duplicate)
    return len(model.subgraphs[0].tensors) - 1


def loggable_tensors(model) -> list[int]:
    """The tensors TensorFlow's calibrator records: float32, not constant, read or written by an op (or the input)."""
    subgraph = model.subgraphs[0]
    touched = set(int(i) for i in subgraph.inputs)
    for op in subgraph.operators:
        touched.update(int(i) for i in op.inputs if i >= 0)
        touched.update(int(i) for i in op.outputs if i >= 0)
    out = []
    for index in sorted(touched):
        tensor = subgraph.tensors[index]
        data = model.buffers[tensor.buffer].data if tensor.buffer < len(model.buffers) else None
        if tensor.type == 0 and (data is None or len(data) == 0):  # TensorType.FLOAT32, no constant data
            out.append(index)
    return out


def collect_minmax(model, samples, *, progress: bool = True, file=None,
                   threads: int = 2) -> dict[int, tuple[float, float]]:
    """{tensor index: (min, max)} over `samples` for every loggable tensor of a float model (bytes or an unpacked
    ModelT, which is left as it was). samples: images NHWC 0..255 for a one-input model, else one
    {signature input name: array} per sample."""
    model = model_object(model) if isinstance(model, (bytes, bytearray)) else model
    indices = loggable_tensors(model)
    signatures = model.signatureDefs
    by_name = {_text(i.name): int(i.tensorIndex) for i in (signatures[0].inputs if signatures else [])}
    interpreter = tensor_reader(model, indices, threads)
    details = interpreter.get_input_details()
    lows = np.full(len(indices), np.inf, np.float32)
    highs = np.full(len(indices), -np.inf, np.float32)
    bar = progress_bar(total=len(samples), desc="calibrating", enabled=progress, file=file)
    try:
        for sample in samples:
            if isinstance(sample, dict):
                for name, array in sample.items():
                    interpreter.set_tensor(by_name[name], np.asarray(array, np.float32))
            else:
                interpreter.set_tensor(details[0]["index"], sample[None].astype(np.float32))
            interpreter.invoke()
            for k, index in enumerate(indices):
                values = interpreter.tensor(index)()
                lows[k] = min(lows[k], values.min())
                highs[k] = max(highs[k], values.max())
                del values
            bar.update(1)
    finally:
        bar.close()
    del interpreter
    gc.collect()
    return {index: (float(lo), float(hi)) for index, lo, hi in zip(indices, lows, highs)}


def tensor_reader(model, indices: list[int], threads: int = 2):
    """An allocated LiteRT interpreter of `model` (an unpacked ModelT, left as it was) whose outputs are the
    tensors `indices`, so that their values can be read after each invoke: how calibration sees intermediates."""
    subgraph = model.subgraphs[0]
    outputs, signatures = subgraph.outputs, model.signatureDefs
    subgraph.outputs, model.signatureDefs = indices, []
    try:
        interpreter = open_interpreter(model_bytes(model), threads=threads)
    finally:
        subgraph.outputs, model.signatureDefs = outputs, signatures
    interpreter.allocate_tensors()
    return interpreter


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def write_minmax(model, stats: dict[int, tuple[float, float]]) -> bytes:
    """The model (bytes or ModelT) with each tensor's calibration range stored as TensorFlow's calibrator does."""
    from ai_edge_litert import schema_py_generated as schema

    model = model_object(model) if isinstance(model, (bytes, bytearray)) else model
    tensors = model.subgraphs[0].tensors
    for index, (low, high) in stats.items():
        tensor = tensors[index]
        if tensor.quantization is None:
            tensor.quantization = schema.QuantizationParametersT()
        tensor.quantization.min = [low]
        tensor.quantization.max = [high]
    return model_bytes(model)
