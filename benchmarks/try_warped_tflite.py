"""Can a video model's warped-frame graph become TFLite? onnx2tf on the exported pair, float32, vs onnxruntime.

    python benchmarks/try_warped_tflite.py [--preset yolact_edge_vid_mobilenetv2] [--imgsz 128]

Exports the ONNX pair (random weights, batch-norm statistics randomised), converts the warped-frame graph with the
exporter's onnx2tf step (in memory, fast mode) and TensorFlow's converter (float32, plain `from_keras_model`:
the exporter's own converter takes one input), runs it with LiteRT on the memory the ONNX key frame left, and
prints what GridSample became (the TFLite op histogram) and each output's max abs / relative error vs onnxruntime.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from yolactedge import build_model
from yolactedge.export.onnx import check_images, ort_session
from yolactedge.export.onnx2tf_step import _onnx2tf
from yolactedge.export.onnx_video import export_video_onnx
from yolactedge.export.tflite_file import inspect_tflite
from yolactedge.model.build import randomize_batchnorm
from yolactedge.runtime.tensors import VIDEO_MEMORY

OUTPUTS = ["boxes", "scores", "masks", "proto"]


def onnx_inputs(key_path: Path, size: int) -> dict[str, np.ndarray]:
    """The warped graph's ONNX inputs: frame 2 of two synthetic images, the memory of the ONNX key frame 1."""
    first, second = (np.ascontiguousarray(f.transpose(2, 0, 1)[None]) for f in check_images(size, 2))
    memory = ort_session(key_path).run(list(VIDEO_MEMORY), {"input": first})
    return {"input": second, **dict(zip(VIDEO_MEMORY, memory))}


def run_tflite(data: bytes, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Feed each NCHW ONNX input to the TFLite input of the same name (NHWC after onnx2tf's transposition)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data, num_threads=2)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        name = next(n for n in inputs if n in detail["name"])
        array = inputs[name]
        if tuple(detail["shape"]) != array.shape:
            array = array.transpose(0, 2, 3, 1)
        interpreter.set_tensor(detail["index"], np.ascontiguousarray(array, np.float32))
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


def main() -> None:
    import tensorflow as tf

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="yolact_edge_vid_mobilenetv2")
    parser.add_argument("--imgsz", type=int, default=128)
    args = parser.parse_args()
    model = randomize_batchnorm(build_model(args.preset, input_size=args.imgsz)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        key_path = Path(tmp) / "video.onnx"
        warped_path = export_video_onnx(model, key_path, progress=False)["warped_path"]
        inputs = onnx_inputs(key_path, args.imgsz)
        reference = dict(zip(OUTPUTS, ort_session(warped_path).run(OUTPUTS, inputs)))
        keras_model = _onnx2tf(warped_path, Path(tmp), simplified=True, strict=False)
        data = tf.lite.TFLiteConverter.from_keras_model(keras_model).convert()
    print(f"{args.preset} at {args.imgsz}: warped-frame graph → onnx2tf → TFLite fp32 ({len(data) / 1e6:.1f} MB)")
    print("ops:", ", ".join(f"{k} {v}" for k, v in sorted(inspect_tflite(data)["op_histogram"].items())))
    for output in run_tflite(data, inputs):
        name = next(n for n, r in reference.items() if r.shape == output.shape)
        error = float(np.abs(output - reference[name]).max())
        print(f"  {name:<7} max abs error {error:.2e}, relative {error / float(np.abs(reference[name]).max()):.2e}")


if __name__ == "__main__":
    main()
