"""Can a video model's ONNX pair become TFLite? onnx2tf on both graphs, float32 and int8, vs onnxruntime.

    python benchmarks/try_video_tflite.py [--preset yolact_edge_vid_mobilenetv2] [--imgsz 128] [--int8]

Exports the ONNX pair (random weights, batch-norm statistics randomised), converts each graph with the exporter's
onnx2tf step (in memory, fast mode) and TensorFlow's converter (`from_keras_model`: the exporter's own converter
takes one input), and runs the TFLite key frame, then the next frame warped from the memory the TFLite key frame
left, through LiteRT signature runners. Prints the op histogram of the warped graph (what GridSample became) and
each output's max abs / relative error vs onnxruntime running the same chain. With --int8 both graphs are also
converted to int8 (float32 interface, TensorFlow's calibrator on consecutive synthetic-video frames, the warped
graph calibrated on the float key frame's memory).
"""
from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

import numpy as np

from yolactedge import build_model
from yolactedge.data.synthetic_video import render_frames
from yolactedge.export.onnx import ort_session
from yolactedge.export.onnx2tf_step import _onnx2tf  # onnx_to_keras's own check feeds one input only
from yolactedge.export.onnx_video import export_video_onnx
from yolactedge.export.tflite_file import inspect_tflite
from yolactedge.model.build import randomize_batchnorm
from yolactedge.runtime.tensors import VIDEO_MEMORY

OUTPUTS = ["boxes", "scores", "masks", "proto"]
CALIBRATION_FRAMES = 8


def nchw(frame: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(frame.transpose(2, 0, 1)[None], np.float32)


def onnx_chain(key_path: Path, warped_path: Path, first: np.ndarray, second: np.ndarray) -> dict:
    """ONNX Runtime: key frame on `first`, `second` warped from its memory → {"key": {...}, "warped": {...}}."""
    names = [*OUTPUTS, *VIDEO_MEMORY]
    key = dict(zip(names, ort_session(key_path).run(names, {"input": nchw(first)})))
    warped = ort_session(warped_path).run(OUTPUTS, {"input": nchw(second), **{n: key[n] for n in VIDEO_MEMORY}})
    return {"key": key, "warped": dict(zip(OUTPUTS, warped))}


def to_keras_layout(name: str, array: np.ndarray, runner) -> np.ndarray:
    """An ONNX (NCHW) array in the layout of the runner's input `name` (onnx2tf makes 4-D inputs NHWC)."""
    shape = tuple(runner.get_input_details()[name]["shape"])
    return array if array.shape == shape else np.ascontiguousarray(array.transpose(0, 2, 3, 1))


def runner_name(runner, wanted: str, inputs: bool) -> str:
    details = runner.get_input_details() if inputs else runner.get_output_details()
    return next(n for n in details if wanted in n)


def tflite_chain(key_data: bytes, warped_data: bytes, first: np.ndarray, second: np.ndarray) -> dict:
    """The same chain through LiteRT, the key frame's memory handed over as the TFLite key graph returns it."""
    from ai_edge_litert.interpreter import Interpreter

    key_runner, warped_runner = (Interpreter(model_content=d, num_threads=2).get_signature_runner()
                                 for d in (key_data, warped_data))
    key_in = runner_name(key_runner, "input", True)
    key = key_runner(**{key_in: to_keras_layout(key_in, nchw(first), key_runner)})
    key = {n: key[runner_name(key_runner, n, False)] for n in [*OUTPUTS, *VIDEO_MEMORY]}
    feeds = {"input": nchw(second)} | {n: key[n] for n in VIDEO_MEMORY}
    warped = warped_runner(**{runner_name(warped_runner, n, True): to_keras_layout(
        runner_name(warped_runner, n, True), a, warped_runner) for n, a in feeds.items()})
    return {"key": key, "warped": {n: warped[runner_name(warped_runner, n, False)] for n in OUTPUTS}}


def convert(keras_model, calibration: list[dict[str, np.ndarray]] | None) -> bytes:
    """Keras → TFLite: float32, or int8 inside with float32 inputs and outputs when `calibration` is given."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: iter(calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def calibration_sets(keras_key, keras_warped, key_path: Path, frames: list[np.ndarray]):
    """Consecutive frame pairs: the key graph sees the first, the warped graph the second with the ONNX key
    frame's memory, each in its Keras model's input order and layout."""
    session = ort_session(key_path)
    key_set, warped_set = [], []
    for first, second in itertools.pairwise(frames):
        memory = dict(zip(VIDEO_MEMORY, session.run(list(VIDEO_MEMORY), {"input": nchw(first)})))
        key_set.append(_keras_feeds(keras_key, {"input": nchw(first)}))
        warped_set.append(_keras_feeds(keras_warped, {"input": nchw(second)} | memory))
    return key_set, warped_set


def _keras_feeds(keras_model, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{Keras input name: array in its layout}: a calibration sample by name, as the signature takes it."""
    sample = {}
    for name, tensor in zip(keras_model.input_names, keras_model.inputs):
        array = feeds[next(n for n in sorted(feeds, key=len, reverse=True) if n in name)]
        shape = tuple(tensor.shape)
        sample[name] = array if array.shape == shape else np.ascontiguousarray(array.transpose(0, 2, 3, 1))
    return sample


def report(label: str, ours: dict, reference: dict) -> None:
    for graph in ("key", "warped"):
        parts = []
        for name, expected in reference[graph].items():
            got = ours[graph][name]
            got = got if got.shape == expected.shape else got.transpose(0, 3, 1, 2)
            error = float(np.abs(got - expected).max())
            parts.append(f"{name} {error:.1e} / {error / max(float(np.abs(expected).max()), 1e-6):.1e}")
        print(f"  {label} {graph:<6} max abs / relative error: " + ", ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="yolact_edge_vid_mobilenetv2")
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--int8", action="store_true")
    args = parser.parse_args()
    model = randomize_batchnorm(build_model(args.preset, input_size=args.imgsz)).eval()
    frames = [image for image, *_ in render_frames(11, 0, args.imgsz, CALIBRATION_FRAMES + 3)]
    first, second = frames[-2:]
    with tempfile.TemporaryDirectory() as tmp:
        key_path = Path(tmp) / "video.onnx"
        warped_path = export_video_onnx(model, key_path, progress=False)["warped_path"]
        reference = onnx_chain(key_path, warped_path, first, second)
        (Path(tmp) / "key").mkdir()
        (Path(tmp) / "warped").mkdir()
        keras_key = _onnx2tf(key_path, Path(tmp) / "key", simplified=True, strict=False)
        keras_warped = _onnx2tf(warped_path, Path(tmp) / "warped", simplified=True, strict=False)
        fp32 = [convert(keras_key, None), convert(keras_warped, None)]
        print(f"{args.preset} at {args.imgsz}: ONNX pair → onnx2tf → TFLite")
        ops = sorted(inspect_tflite(fp32[1])["op_histogram"].items())
        print("warped-graph ops:", ", ".join(f"{k} {v}" for k, v in ops))
        report("fp32", tflite_chain(*fp32, first, second), reference)
        if args.int8:
            key_set, warped_set = calibration_sets(keras_key, keras_warped, key_path, frames[:-2])
            int8 = [convert(keras_key, key_set), convert(keras_warped, warped_set)]
            report("int8", tflite_chain(*int8, first, second), reference)


if __name__ == "__main__":
    main()
