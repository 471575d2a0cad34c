"""Keras → TFLite bytes: the TFLite converter set up per precision (fp32, fp16, int8, int16x8).

The Keras model is wrapped in a `tf.function` returning a dict keyed by the ONNX output names and converted from
its concrete function (with a bare `tf.Module` as the trackable object, so the converter keeps a
`serving_default` signature without re-tracing every Keras layer, which `from_keras_model` does). The converter's
output index order is not stable, so the subgraph's output list is permuted to boxes, scores, proto, masks (the
order NXP's example reads).
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import numpy as np

from .calibration import representative_batches
from .common import TFLITE_OUTPUT_ORDER, ExportError, one_line
from .exact_constants import float_model_capture, store_exact_constants
from .fastcalib import fast_calibration, per_op_constants
from .quiet import import_tensorflow, quiet_fds
from .tflite_file import INPUT_NAME, reorder_outputs, signature_outputs


class _Hidden:
    """Holds the Keras model out of tf.Module's tracking, so saving the wrapper does not trace every layer."""

    def __init__(self, model) -> None:
        self.model = model


@dataclass(frozen=True)
class GraphInput:
    """One input of the TFLite file: its signature name, its shape in the file, and the permutation taking it to
    the layout onnx2tf's Keras model takes (None: the same). A video model's memory tensors enter the warped-frame
    file in the layout the key-frame file outputs them in, so the runtime hands them over untouched."""

    name: str
    shape: tuple[int, ...]
    to_keras: tuple[int, ...] | None = None


def keras_to_tflite(
    keras_model, precision: str, calib_images=None, *, progress: bool = True,
    calibrator: str = "fast", info: dict | None = None, float_ops: tuple[str, ...] = (),
    float_nodes=None, inputs: list[GraphInput] | None = None, output_perms: dict[str, tuple[int, ...]] | None = None,
    output_order: tuple[str, ...] = TFLITE_OUTPUT_ORDER,
) -> bytes:
    """Convert onnx2tf's Keras model → TFLite bytes with signature outputs named as the ONNX outputs, in
    `output_order` by index.

    int8: full integer, int8 inputs (the image's scale 1, zero point -128 when the calibration covers 0..255),
    float32 outputs. int16x8: int16 activations with int8 weights, float32 input and outputs. fp16: float16 weights.
    calib_images: uint8 (or float) NHWC 0..255, needed for int8 and int16x8; for a model with several `inputs`,
        a list of samples {input name: float32 array in the file's layout}.
    calibrator: "fast" (statistics from a multi-threaded XNNPACK run, see `fast_calibration`) or
        "tensorflow" (TensorFlow's own single-threaded calibrator).
    info: filled with {"calibrator": which one ran, "calibration_s": its time} for quantised precisions, and for
        int8 {"exact_constants": how many ADD/SUB constants `store_exact_constants` put on their exact grid}.
    float_ops: int8 only: TFLite operator types left in float (with a DEQUANTIZE before them), e.g. SOFTMAX.
    float_nodes: int8 only: a function of the calibrated float model's bytes → the output tensor names of the
        operators to leave in float (e.g. `sampling_grid.sampling_grid_nodes`).
    inputs: the file's inputs in the Keras model's input order (default: its one image input, "input").
    output_perms: outputs transposed inside the graph before they leave it, by name.
    """
    tf = import_tensorflow()
    names = list(keras_model.output_names)
    hidden = _Hidden(keras_model)
    inputs = inputs or [GraphInput(INPUT_NAME, tuple(keras_model.inputs[0].shape))]
    output_perms = output_perms or {}
    specs = [tf.TensorSpec(i.shape, tf.float32, name=i.name) for i in inputs]

    @tf.function(input_signature=specs)
    def serve(*tensors):  # the specs' names become the signature's input names
        tensors = [t if i.to_keras is None else tf.transpose(t, i.to_keras) for i, t in zip(inputs, tensors)]
        outputs = hidden.model(tensors if len(tensors) > 1 else tensors[0], training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return {name: tensor if name not in output_perms else tf.transpose(tensor, output_perms[name])
                for name, tensor in zip(names, outputs)}

    module = tf.Module()
    module.serve = serve
    concrete = serve.get_concrete_function()
    state: dict = {}
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    data = _run_converter(converter, tf, precision, calib_images, progress, calibrator, state, float_ops,
                          float_nodes)
    del converter, concrete, module, serve
    if not signature_outputs(data):  # the wrapper could not be saved: the slower Keras path keeps the names
        if len(inputs) > 1 or output_perms or inputs[0].to_keras:
            raise ExportError("TFLite conversion lost the serving signature; cannot name the inputs and outputs")
        converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
        data = _run_converter(converter, tf, precision, calib_images, progress, calibrator, state, float_ops,
                              float_nodes)
        del converter
        if not signature_outputs(data):
            raise ExportError("TFLite conversion lost the serving signature; cannot name the outputs")
    if state.get("error"):
        warnings.warn(f"fast calibration failed ({state['error']}); TensorFlow's calibrator was used", stacklevel=2)
    if info is not None and precision in ("int8", "int16x8"):
        info["calibrator"] = "fast (LiteRT XNNPACK min/max)" if state.get("fast") else "TensorFlow"
        if "seconds" in state:
            info["calibration_s"] = round(state["seconds"], 3)
    if info is not None and "exact_constants" in state:
        info["exact_constants"] = state["exact_constants"]
    return reorder_outputs(data, output_order)


def _run_converter(converter, tf, precision: str, calib_images, progress: bool, calibrator: str, state: dict,
                   float_ops: tuple[str, ...] = (), float_nodes=None) -> bytes:
    if float_ops and precision != "int8":
        raise ExportError(f"float operators inside a {precision} graph are not supported (int8 only)")
    if precision != "int8":
        float_nodes = None  # nothing is int8 there
    with warnings.catch_warnings(), quiet_fds() as stderr, kept_in_float(float_ops, float_nodes):
        warnings.simplefilter("ignore")
        _configure(converter, tf, precision, calib_images, progress, stderr)
        if float_ops or float_nodes:  # the denylisted operators stay float builtins
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        if precision in ("int8", "int16x8") and calibrator == "fast":
            patch = fast_calibration(converter.representative_dataset.samples, state, progress=progress, file=stderr)
        else:
            patch = per_op_constants() if precision == "int16x8" else contextlib.nullcontext()
        capture = float_model_capture(state) if precision == "int8" else contextlib.nullcontext()
        try:
            with patch, capture:
                data = converter.convert()
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(f"TFLite {precision} conversion failed: {one_line(exc)[:300]}") from None
    if "float_model" in state:  # int8: the anchor centres exact (see exact_constants)
        data, state["exact_constants"] = store_exact_constants(data, state.pop("float_model"))
    return data


@contextlib.contextmanager
def kept_in_float(op_types: tuple[str, ...], node_finder=None):
    """Have TensorFlow's int8 quantizer leave these operator types, and the operators `node_finder` names in the
    calibrated model it is given, in float (its `denylisted_ops` and `denylisted_nodes`, which the public
    converter API does not expose)."""
    if not op_types and node_finder is None:
        yield
        return
    from tensorflow.lite.python import lite

    original = lite._mlir_quantize

    def quantize(*args, **kwargs):
        calibrated = args[0] if args else kwargs.get("input_data_str")
        nodes = node_finder(calibrated) if node_finder is not None else []
        return original(*args, **kwargs, denylisted_ops=list(op_types), denylisted_nodes=nodes)

    lite._mlir_quantize = quantize
    try:
        yield
    finally:
        lite._mlir_quantize = original


def _configure(converter, tf, precision: str, calib_images, progress: bool, stderr=None) -> None:
    if precision == "fp32":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
        return
    if calib_images is None or len(calib_images) == 0:
        raise ExportError(f"{precision} quantisation needs calibration images")
    samples = cover_input_range(calib_images)
    converter.representative_dataset = CalibrationSet(samples, progress=progress, file=stderr)
    if precision == "int8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.float32
    elif precision == "int16x8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    else:
        raise ExportError(f"unknown precision {precision!r}")


class CalibrationSet:
    """The converter's representative dataset (callable → batches), which also hands fast calibration the samples:
    an image array (one input), or a list of {input name: array} (several)."""

    def __init__(self, samples, *, progress: bool = True, file=None) -> None:
        self.samples, self.progress, self.file = samples, progress, file

    def __call__(self):
        return representative_batches(self.samples, progress=self.progress, file=self.file)


def cover_input_range(samples):
    """Make the calibration set span the whole pixel range 0..255, so the int8 image input gets exactly scale 1
    and zero point -128 (int8 = pixel - 128, lossless). Two corner pixels of the first image are set to 0 and 255
    when no image reaches those values already; real photos nearly always do. Samples of several inputs (a list
    of {name: array}) have their image under INPUT_NAME."""
    if not isinstance(samples, np.ndarray):
        images = np.stack([s[INPUT_NAME][0] for s in samples])
        covered = cover_input_range(images)
        if covered is images:
            return samples
        return [{**samples[0], INPUT_NAME: covered[:1]}, *samples[1:]]
    if samples.min() <= 0 and samples.max() >= 255:
        return samples
    samples = samples.copy()
    samples[0, 0, 0] = 0
    samples[0, 0, 1] = 255
    return samples
