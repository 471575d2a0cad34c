"""ONNX → TensorFlow (onnx2tf, in memory) → TFLite (fp32, fp16, int8, int16x8), offline, lean and verified.

Why this path (see docs/feasibility): onnx2tf's own outputs (SavedModel plus float .tflite files) are never
used, so it runs with `disable_model_save=True` and returns a Keras model. That model is wrapped in a
`tf.function` returning a dict keyed by the ONNX output names and converted from its concrete function (with a
bare `tf.Module` as the trackable object, so the converter keeps a `serving_default` signature without
re-tracing every Keras layer, which `from_keras_model` does). The converter's output index order is not
stable, so the subgraph's output list is permuted in place in the flatbuffer to boxes, scores, proto, masks
(the order NXP's example reads), and checked with LiteRT's interpreter.

onnx2tf always loads `calibration_image_sample_data_20x128x128x3_float32.npy` from the working directory and
downloads it when absent: the conversion runs in a temporary directory where that file is written first, so
no network is ever touched.
"""
from __future__ import annotations

import contextlib
import gc
import importlib.util
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from ..fileio import atomic_write_json
from . import TFLITE_OUTPUT_ORDER, ExportError, ExportResult, Stages, atomic_replace
from .calibration import calibration_dataset, held_out_images, representative_batches

SAMPLE_DATA_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
SIGNATURE_KEY = "serving_default"
INPUT_NAME = "input"
VELA_ACCELERATOR = "ethos-u65-256"  # i.MX 93
VERIFY_SEED_OFFSET = 1  # held-out images use calib_seed + 1
BOXES_RANGE = (0.0, 1.0)  # the calibration range given to the decoded boxes: the image (see fast_calibration)


# --- onnx2tf ----------------------------------------------------------------------------------------------------

def _import_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


@contextlib.contextmanager
def working_directory(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


KERAS_TOLERANCE = 1e-4  # max |keras - onnxruntime| / max |onnxruntime|, per output


def onnx_to_keras(onnx_path: str | os.PathLike, workdir: str | os.PathLike, *, simplified: bool = False,
                  strict: bool | None = None):
    """onnx2tf in memory (`disable_model_save=True`) → tf_keras model with NHWC input, inside `workdir`.

    `simplified`: the ONNX already went through onnxsim (ours always does), so onnx2tf's own passes are skipped.
    `strict`: onnx2tf's strict mode (per-op accuracy correction: right but slow at 550). None tries the fast
    mode first and checks the Keras model against onnxruntime on one image, redoing it strictly on a mismatch.
    """
    if strict is None:
        model = _onnx2tf(onnx_path, workdir, simplified=simplified, strict=False)
        error = keras_vs_onnx(model, onnx_path)
        if error <= KERAS_TOLERANCE:
            return model
        del model
        _release_tf()
        strict = True
    model = _onnx2tf(onnx_path, workdir, simplified=simplified, strict=strict)
    error = keras_vs_onnx(model, onnx_path)
    if not error <= KERAS_TOLERANCE:
        raise ExportError(f"onnx2tf's TensorFlow model differs from ONNX by {error:.2e} (relative); cannot convert")
    return model


def keras_vs_onnx(keras_model, onnx_path, image: np.ndarray | None = None) -> float:
    """Max over outputs of max |keras - onnxruntime| / max |onnxruntime| on one real-looking image."""
    from .onnx import check_images, run_onnx

    if image is None:
        image = check_images(int(keras_model.inputs[0].shape[1]), count=1)[0]
    reference = run_onnx(onnx_path, image[None])[0]
    outputs = keras_model(image[None].astype(np.float32), training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    worst = 0.0
    for name, tensor in zip(keras_model.output_names, outputs):
        ours, ref = np.asarray(tensor), reference.get(name)
        if ref is None or ours.shape != ref.shape:
            return float("inf")
        error = float(np.abs(ours - ref).max()) / max(float(np.abs(ref).max()), 1e-6)
        worst = max(worst, error if np.isfinite(error) else float("inf"))
    return worst


def preempt_sample_download(workdir: Path) -> None:
    """onnx2tf downloads a calibration sample file unless one is in its working directory: write one."""
    sample = np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32)
    np.save(Path(workdir) / SAMPLE_DATA_FILE, sample)


def _onnx2tf(onnx_path, workdir, *, simplified: bool, strict: bool):
    _import_tf()
    import onnx2tf

    workdir = Path(workdir).resolve()
    onnx_path = Path(onnx_path).resolve()
    preempt_sample_download(workdir)
    stdout = io.StringIO()
    try:
        with working_directory(workdir), warnings.catch_warnings(), contextlib.redirect_stdout(stdout):
            warnings.simplefilter("ignore")
            model = onnx2tf.convert(
                input_onnx_file_path=str(onnx_path),
                output_folder_path=str(workdir / "onnx2tf"),
                disable_model_save=True,
                not_use_onnxsim=simplified,
                disable_strict_mode=not strict,
                non_verbose=True,
                verbosity="error",
            )
    except Exception as exc:
        detail = _last_line(stdout.getvalue()) or _one_line(exc)
        raise ExportError(f"onnx2tf could not convert {onnx_path.name}: {detail}") from None
    if model is None:
        raise ExportError(f"onnx2tf could not convert {onnx_path.name}: {_last_line(stdout.getvalue())}")
    return model


# --- Keras → TFLite ---------------------------------------------------------------------------------------------

class _Hidden:
    """Holds the Keras model out of tf.Module's tracking, so saving the wrapper does not trace every layer."""

    def __init__(self, model) -> None:
        self.model = model


def keras_to_tflite(
    keras_model, precision: str, calib_images: np.ndarray | None = None, *, progress: bool = True,
    calibrator: str = "fast", info: dict | None = None,
) -> bytes:
    """Convert onnx2tf's Keras model → TFLite bytes with signature outputs named as the ONNX outputs, in
    TFLITE_OUTPUT_ORDER by index.

    int8: full integer, int8 input (scale 1, zero point -128 when the calibration covers 0..255), float32 outputs.
    int16x8: int16 activations with int8 weights, float32 input and outputs. fp16: float16 weights.
    calib_images: uint8 (or float) NHWC 0..255, needed for int8 and int16x8.
    calibrator: "fast" (statistics from a multi-threaded XNNPACK run, see `fast_calibration`) or
        "tensorflow" (TensorFlow's own single-threaded calibrator).
    info: filled with {"calibrator": which one ran, "calibration_s": its time} for quantised precisions.
    """
    tf = _import_tf()
    names = list(keras_model.output_names)
    hidden = _Hidden(keras_model)
    spec = tf.TensorSpec(keras_model.inputs[0].shape, tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def serve(input):  # the argument name becomes the signature's input name
        outputs = hidden.model(input, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return {name: tensor for name, tensor in zip(names, outputs)}

    module = tf.Module()
    module.serve = serve
    concrete = serve.get_concrete_function()
    state: dict = {}
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    data = _run_converter(converter, tf, precision, calib_images, progress, calibrator, state)
    del converter, concrete, module, serve
    if not signature_outputs(data):  # the wrapper could not be saved: the slower Keras path keeps the names
        converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
        data = _run_converter(converter, tf, precision, calib_images, progress, calibrator, state)
        del converter
        if not signature_outputs(data):
            raise ExportError("TFLite conversion lost the serving signature; cannot name the outputs")
    if state.get("error"):
        warnings.warn(f"fast calibration failed ({state['error']}); TensorFlow's calibrator was used", stacklevel=2)
    if info is not None and precision in ("int8", "int16x8"):
        info["calibrator"] = "fast (LiteRT XNNPACK min/max)" if state.get("fast") else "TensorFlow"
        if "seconds" in state:
            info["calibration_s"] = round(state["seconds"], 3)
    return reorder_outputs(data, TFLITE_OUTPUT_ORDER)


def _run_converter(converter, tf, precision: str, calib_images, progress: bool, calibrator: str, state: dict) -> bytes:
    with warnings.catch_warnings(), _quiet_fds() as stderr:
        warnings.simplefilter("ignore")
        _configure(converter, tf, precision, calib_images, progress, stderr)
        use_fast = precision in ("int8", "int16x8") and calibrator == "fast"
        fast = fast_calibration(converter.representative_dataset, state, progress=progress, file=stderr) \
            if use_fast else contextlib.nullcontext()
        try:
            with fast:
                return converter.convert()
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(f"TFLite {precision} conversion failed: {_one_line(exc)[:300]}") from None


def _configure(converter, tf, precision: str, calib_images, progress: bool, stderr=None) -> None:
    if precision == "fp32":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
        return
    if calib_images is None or len(calib_images) == 0:
        raise ExportError(f"{precision} quantisation needs calibration images")
    images = cover_input_range(calib_images)
    converter.representative_dataset = CalibrationSet(images, progress=progress, file=stderr)
    if precision == "int8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.float32
    elif precision == "int16x8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    else:
        raise ExportError(f"unknown precision {precision!r}")


class CalibrationSet:
    """The converter's representative dataset (callable → batches), which also hands fast calibration the array."""

    def __init__(self, images: np.ndarray, *, progress: bool = True, file=None) -> None:
        self.images, self.progress, self.file = images, progress, file

    def __call__(self):
        return representative_batches(self.images, progress=self.progress, file=self.file)


def cover_input_range(images: np.ndarray) -> np.ndarray:
    """Make the calibration set span the whole pixel range 0..255, so the int8 input gets exactly scale 1 and
    zero point -128 (int8 = pixel - 128, lossless). Two corner pixels of the first image are set to 0 and 255
    when no image reaches those values already; real photos nearly always do."""
    if images.min() <= 0 and images.max() >= 255:
        return images
    images = images.copy()
    images[0, 0, 0] = 0
    images[0, 0, 1] = 255
    return images


@contextlib.contextmanager
def _quiet_fds():
    """Silence the converter's C++ chatter on fds 1/2 ("fully_quantize: 0, ..."), unless debugging.

    Yields a text stream on the real stderr, for progress bars.
    """
    if os.environ.get("YOLACTEDGE_EXPORT_DEBUG"):
        yield sys.stderr
        return
    saved = []
    stream = None
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        stream = os.fdopen(os.dup(2), "w", buffering=1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            saved.append((fd, os.dup(fd)))
            os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError):  # no real fds (some test runners): nothing to silence
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        saved = []
        if stream is not None:
            stream.close()
        stream = None
    try:
        yield stream if stream is not None else sys.stderr
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        if stream is not None:
            stream.close()


# --- fast calibration ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def fast_calibration(dataset: CalibrationSet, state: dict, *, progress: bool = True, file=None, threads: int = 2):
    """Replace TensorFlow's calibration (single-threaded reference kernels: ~4 s per 550x550 image here, and
    done twice for int16x8) by one LiteRT run with XNNPACK on `threads` threads that makes every tensor the
    calibrator would log a model output and keeps the global min/max of each, as TensorFlow's calibrator does.

    The statistics go into the model exactly where TensorFlow's calibrator puts them (each tensor's
    quantization min/max) and TensorFlow's own quantizers take it from there (the MLIR one for int8, the
    deprecated one that int16x8 needs), so the rest of the conversion is TensorFlow's. One range is ours: the
    decoded boxes get BOXES_RANGE, the image, instead of the anchors' whole reach (about [-0.35, 1.35]), so the
    quantized boxes saturate at the image border, which clamps them as post-processing would, with no extra
    operator, and an int8 step is 1/255 of the image side instead of about 1/150. If collecting the
    statistics fails, TensorFlow's calibrator runs instead and state["error"] says why; state["fast"] is True
    when the fast path produced the statistics, state["seconds"] is its time.
    """
    import inspect

    from tensorflow.lite.python.optimize import calibrator

    original_calibrate = calibrator.Calibrator.calibrate
    original_quantize = calibrator.Calibrator.calibrate_and_quantize
    quantize_signature = inspect.signature(original_quantize)

    def calibrated_model(self) -> bytes:
        cached = getattr(self, "_yolactedge_calibrated", None)
        if cached is None:
            start = time.perf_counter()
            model = _model_object(self._model_content)
            stats = collect_minmax(model, dataset.images, progress=progress, file=file, threads=threads)
            boxes = signature_outputs(self._model_content).get("boxes")
            if boxes in stats:
                stats[boxes] = BOXES_RANGE
            cached = self._yolactedge_calibrated = write_minmax(model, stats)
            state["fast"] = True
            state["seconds"] = state.get("seconds", 0.0) + time.perf_counter() - start
        return cached

    def calibrate(self, dataset_gen):
        try:
            return calibrated_model(self)
        except Exception as exc:  # fall back to the slow, reference path
            state["error"] = _one_line(exc)
            return original_calibrate(self, dataset_gen)

    def calibrate_and_quantize(self, dataset_gen, *args, **kwargs):
        try:
            bound = quantize_signature.bind(self, dataset_gen, *args, **kwargs)
            bound.apply_defaults()
            a = bound.arguments
            codes = [np.dtype(a[k].as_numpy_dtype()).num
                     for k in ("input_type", "output_type", "activations_type", "bias_type")]
            calibrated = calibrated_model(self)
        except Exception as exc:  # fall back to the slow, reference path
            state["error"] = _one_line(exc)
            state["fast"] = False
            return original_quantize(self, dataset_gen, *args, **kwargs)
        quantizer = calibrator.Calibrator(calibrated)  # no samples fed: it quantizes with the ranges in the model
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


def _model_object(content: bytes):
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils.convert_bytearray_to_object(bytearray(content))


def _model_bytes(model) -> bytes:
    from tensorflow.lite.tools import flatbuffer_utils

    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


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


def collect_minmax(model, images: np.ndarray, *, progress: bool = True, file=None, threads: int = 2) -> dict[int, tuple[float, float]]:
    """{tensor index: (min, max)} over `images` (NHWC 0..255) for every loggable tensor of a float model
    (bytes or an unpacked ModelT, which is left as it was)."""
    from .calibration import _bar

    model = _model_object(model) if isinstance(model, (bytes, bytearray)) else model
    indices = loggable_tensors(model)
    subgraph = model.subgraphs[0]
    outputs, signatures = subgraph.outputs, model.signatureDefs
    subgraph.outputs, model.signatureDefs = indices, []
    try:
        interpreter = _interpreter(_model_bytes(model), threads=threads)
    finally:
        subgraph.outputs, model.signatureDefs = outputs, signatures
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    lows = np.full(len(indices), np.inf, np.float32)
    highs = np.full(len(indices), -np.inf, np.float32)
    bar = _bar(total=len(images), desc="calibrating", enabled=progress, file=file)
    try:
        for image in images:
            interpreter.set_tensor(inp["index"], image[None].astype(np.float32))
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


def write_minmax(model, stats: dict[int, tuple[float, float]]) -> bytes:
    """The model (bytes or ModelT) with each tensor's calibration range stored as TensorFlow's calibrator does."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = _model_object(model) if isinstance(model, (bytes, bytearray)) else model
    tensors = model.subgraphs[0].tensors
    for index, (low, high) in stats.items():
        tensor = tensors[index]
        if tensor.quantization is None:
            tensor.quantization = schema.QuantizationParametersT()
        tensor.quantization.min = [low]
        tensor.quantization.max = [high]
    return _model_bytes(model)


# --- the flatbuffer, read and patched in place --------------------------------------------------------------------

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


# --- inspection ---------------------------------------------------------------------------------------------------

def _interpreter(model, threads: int = 2, *, delegates: bool = True):
    """LiteRT interpreter; `delegates=False` keeps XNNPACK out, so the op list is the file's own."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    source = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray)) else {"model_path": str(model)}
    return Interpreter(**source, num_threads=threads, experimental_op_resolver_type=resolver)


def inspect_tflite(model, precision: str | None = None) -> dict:
    """Interface, output index order, op histogram and stray ops of a TFLite file (path or bytes)."""
    data = bytes(model) if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
    interpreter = _interpreter(data, threads=1, delegates=False)
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


# --- Vela (i.MX 93) -----------------------------------------------------------------------------------------------

def _vela_command() -> list[str] | None:
    exe = shutil.which("vela") or shutil.which("vela", path=str(Path(sys.executable).parent))
    if exe:
        return [exe]
    if importlib.util.find_spec("ethosu") is not None and importlib.util.find_spec("ethosu.vela") is not None:
        return [sys.executable, "-m", "ethosu.vela"]
    return None


def vela_available() -> bool:
    return _vela_command() is not None


def run_vela(tflite_path: str | os.PathLike, output_dir: str | os.PathLike, *,
             accelerator: str = VELA_ACCELERATOR, extra_args: list[str] | None = None) -> dict:
    """Compile an int8 .tflite for Ethos-U with Vela → {"path", "command", "summary", ...}."""
    command = _vela_command()
    if command is None:
        raise ExportError("--target imx93 needs the Vela compiler: pip install ethos-u-vela")
    tflite_path, output_dir = Path(tflite_path), Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    args = [*command, str(tflite_path), "--accelerator-config", accelerator, "--optimise", "Performance",
            "--output-dir", str(output_dir), *(extra_args or [])]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=output_dir)
    produced = output_dir / f"{tflite_path.stem}_vela.tflite"
    if proc.returncode != 0 or not produced.is_file():
        detail = _last_line(proc.stderr) or _last_line(proc.stdout) or f"exit code {proc.returncode}"
        raise ExportError(f"Vela failed: {detail}")
    summary = _vela_summary(proc.stdout)
    summary.update(_vela_csv_estimate(output_dir, tflite_path.stem))
    version = subprocess.run([*command, "--version"], capture_output=True, text=True).stdout.strip()
    return {"path": str(produced), "accelerator": accelerator, "version": version,
            "command": " ".join(Path(a).name if i == 0 else a for i, a in enumerate(args)), "summary": summary}


def _vela_csv_estimate(output_dir: Path, stem: str) -> dict:
    """Vela's estimated inference time and NPU cycles, which it writes only to its summary CSV."""
    import csv

    for path in sorted(output_dir.glob(f"{stem}_summary_*.csv")):
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        if rows and rows[0].get("inference_time"):
            row = rows[0]
            return {"Estimated inference time": f"{float(row['inference_time']) * 1000:.2f} ms",
                    "NPU cycles": row.get("cycles_npu", "")}
    return {}


def _vela_summary(stdout: str) -> dict:
    """The lines of Vela's network summary that matter for deployment, plus the op types left to the CPU."""
    keys = ("Accelerator configuration", "System configuration", "Memory mode", "Accelerator clock",
            "Total SRAM used", "Total Off-chip Flash used", "Total DRAM used", "CPU operators", "NPU operators",
            "Batch Inference time", "Neural network macs")
    summary: dict = {}
    cpu_ops: Counter = Counter()
    for line in stdout.splitlines():
        stripped = line.strip()
        if stripped.startswith("Warning (supported operators) operator:"):
            cpu_ops[stripped.split("operator:", 1)[1].split(",")[0].strip()] += 1
        for key in keys:
            if stripped.startswith(key):
                summary[key] = " ".join(stripped[len(key):].lstrip(" =").split())
    if cpu_ops:
        summary["CPU operator types"] = dict(cpu_ops)
    return summary


# --- the TFLite export ------------------------------------------------------------------------------------------

def export_tflite(
    source,
    path: Path,
    *,
    precision: str = "int8",
    calib=None,
    calib_count: int = 100,
    calib_seed: int = 1337,
    target: str | None = None,
    verify: bool = True,
    verify_count: int | None = None,
    progress: bool = True,
    stages: Stages | None = None,
) -> ExportResult:
    """A resolved ModelSource → TFLite file at `path` (atomic), plus `<stem>.verify.json` when `verify`."""
    from .onnx import export_onnx

    stages = stages or Stages(total=6, verbose=progress)
    verify_count = verify_count or (2 if precision == "int16x8" else 4)  # int16x8 runs on reference kernels
    size = source.input_size
    result_warnings: list[str] = []
    calib_images, calib_info = None, None
    quantised = precision in ("int8", "int16x8")
    with tempfile.TemporaryDirectory(prefix="yolactedge-export-") as tmp:
        workdir = Path(tmp)
        if quantised:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                calib_images, calib_info = stages.run(
                    "calibration images", calibration_dataset, calib, calib_count, calib_seed, size, progress=progress
                )
            for w in caught:
                result_warnings.append(str(w.message))
                warnings.warn(str(w.message), stacklevel=3)
        onnx_check = None
        if source.onnx_path is not None:
            onnx_path, simplified = source.onnx_path, source.simplified
        else:
            onnx_path, simplified = workdir / "model.onnx", True
            onnx_check = stages.run("export ONNX", export_onnx, source.module, onnx_path, check_count=1,
                                    progress=progress)["check"]
        keras_model = stages.run("ONNX → TensorFlow (onnx2tf)", onnx_to_keras, onnx_path, workdir, simplified=simplified)
        convert_info: dict = {}
        data = stages.run(f"TFLite {precision}", keras_to_tflite, keras_model, precision, calib_images,
                          progress=progress, info=convert_info)
        del keras_model
        _release_tf()

        info = inspect_tflite(data, precision)
        if info["output_order"] != list(TFLITE_OUTPUT_ORDER):
            raise ExportError(f"TFLite output order is {info['output_order']}, expected {list(TFLITE_OUTPUT_ORDER)}")
        _check_input(info["inputs"][0], precision, result_warnings)
        for item in info["stray_ops"]:
            result_warnings.append(f"stray op in the {precision} graph: {item}")
            warnings.warn(f"stray op in the {precision} graph: {item}", stacklevel=3)

        model_file = workdir / (path.stem.removesuffix("_vela") + ".tflite")
        model_file.write_bytes(data)
        verification = None
        if verify:
            from .verify import verify_tflite

            held_out, description = held_out_images(
                calib, verify_count, calib_seed + VERIFY_SEED_OFFSET, size,
                calibration_files=(calib_info or {}).get("files", ()),
            )
            verification = stages.run(
                "verify", verify_tflite, model_file, onnx_path, held_out, images_description=description,
                json_path=False, print_table=progress,
            )
        vela = None
        final = model_file
        if target == "imx93":
            vela = stages.run("Vela (Ethos-U65)", run_vela, model_file, workdir / "vela")
            final = Path(vela["path"])
            compiled = final.read_bytes()
            if signature_outputs(compiled):  # Vela keeps the signature; make sure it kept the order too
                compiled = reorder_outputs(compiled, TFLITE_OUTPUT_ORDER)
                final.write_bytes(compiled)
            try:
                compiled_info = inspect_tflite(compiled)
                vela["op_histogram"] = compiled_info["op_histogram"]
                vela["output_order"] = compiled_info["output_order"]
            except Exception:  # a LiteRT without the Ethos-U custom op may refuse to list it: not needed
                pass
            vela["path"] = str(path)
        atomic_replace(final, path)
    from ..config import config_to_dict

    # The runtime reads class names (and the source config) from this sidecar: TFLite has no metadata of ours.
    _write_json(path.with_suffix(".json"), {"class_names": list(source.config.class_names),
                                            "config": config_to_dict(source.config), "source": source.origin,
                                            "precision": precision})

    verify_json = None
    if verification is not None:
        verification["model"] = path.name
        if target == "imx93":
            verification["note"] = "verified the int8 model before Vela (Ethos-U operators do not run on a CPU)"
        verify_json = path.with_suffix(".verify.json")
        _write_json(verify_json, verification)
    result = ExportResult(
        format="tflite", precision=precision, path=path, input_size=size, target=target,
        size_bytes=path.stat().st_size, inputs=info["inputs"], outputs=info["outputs"],
        output_order=info["output_order"], op_histogram=info["op_histogram"], stray_ops=info["stray_ops"],
        stage_times=stages.times, calibration=_calib_summary(calib_info, convert_info), verification=verification,
        verify_json=verify_json, vela=vela, warnings=result_warnings, onnx_check=onnx_check,
    )
    if progress:
        print(result.summary(), flush=True)
    return result


def _check_input(detail: dict, precision: str, result_warnings: list[str]) -> None:
    expected = {"int8": "int8"}.get(precision, "float32")
    if detail["dtype"] != expected:
        raise ExportError(f"TFLite {precision} input is {detail['dtype']}, expected {expected}")
    if precision == "int8":
        scale, zero_point = detail.get("quantization", (0.0, 0))
        if abs(scale - 1.0) > 1e-5 or zero_point != -128:
            message = f"int8 input quantisation is scale {scale:g}, zero point {zero_point} (expected 1, -128)"
            result_warnings.append(message)
            warnings.warn(message, stacklevel=4)


def _calib_summary(info: dict | None, convert_info: dict) -> dict | None:
    if info is None:
        return None
    return {k: v for k, v in info.items() if k != "files"} | convert_info


def _write_json(path: Path, data: dict) -> None:
    atomic_write_json(path, data, indent=1, default=str)


def _release_tf() -> None:
    """Drop onnx2tf's Keras graph state: the process keeps far less memory after a conversion."""
    try:
        import tf_keras

        tf_keras.backend.clear_session()
    except Exception:  # best effort
        pass
    gc.collect()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""
