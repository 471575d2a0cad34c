"""The test session's shared models: tiny YOLACT-Edge models in every format, built once (ONNX ~2 s, TFLite ~20-40 s
on 2 cores), and an untrained checkpoint for the CLI tests.

The model is the demo preset, narrowed and at 128x128, with its non-backbone convolutions rescaled in one forward
pass so that every output is far from flat (scores from ~0 to ~0.7, masks ±1): with Xavier init alone all scores
sit at 1/7 and detections would compare nothing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SIZE = 128  # small, and onnx2tf converts it (from the simplified graph the exporter writes)
_GAINS = {"prediction_layers.0.conf_layer": 0.7, "prediction_layers.0.bbox_layer": 0.3}


def synthetic(count: int, seed: int, size: int = SIZE) -> np.ndarray:
    """uint8 [N, size, size, 3] RGB renders of the demo dataset."""
    from yolactedge.export.calibration import synthetic_images

    return synthetic_images(count, seed, size, progress=False)


def make_tiny_model(seed: int = 0, preset: str = "yolact_edge_demo"):
    import torch
    from torch import nn

    from yolactedge.config import get_preset
    from yolactedge.model.build import build_model

    torch.manual_seed(seed)
    # Anchors no smaller than 1/8 of the image: int8 boxes are off by ~1/128 of the image (the step of an int8
    # output spanning 0..1), which would decide the IoU of the tiny boxes of a full-size prior set.
    config = get_preset(preset).replace(
        input_size=SIZE, fpn_channels=32, proto_channels=32, pred_scales=(16, 24, 40, 64, 96))
    model = build_model(config)
    done: set[str] = set()

    def rescale(name, module, _inputs, output):
        if name in done:  # the shared head runs once per pyramid level: scale on its first call only
            return None
        done.add(name)
        gain = _GAINS.get(name, 1.0) / max(output.std().item(), 1e-6)
        module.weight.mul_(gain)
        module.bias.mul_(gain)
        return output * gain

    convs = [(n, m) for n, m in model.named_modules()
             if isinstance(m, nn.Conv2d) and not n.startswith(("backbone.", "semantic"))]
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: rescale(n, mod, i, o)) for n, m in convs]
    image = torch.from_numpy(synthetic(1, seed=seed).transpose(0, 3, 1, 2).astype(np.float32))
    with torch.no_grad():
        model(image)
    for hook in hooks:
        hook.remove()
    return model.eval()


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One torch thread while these tests run: on a small shared CPU, torch's OpenMP pool of 2+ threads next to
    onnxruntime's and XNNPACK's gets 10-100x slower (seconds per 128x128 forward pass)."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runtime models")  # a space in the path, on purpose


@pytest.fixture(scope="session")
def tiny_model():
    pytest.importorskip("torch")
    return make_tiny_model()


@pytest.fixture(scope="session")
def tiny_video_model():
    """The MobileNetV2 video preset, as narrow and small as `tiny_model` (its flow net and SPA keep their init)."""
    pytest.importorskip("torch")
    return make_tiny_model(preset="yolact_edge_vid_mobilenetv2")


@pytest.fixture(scope="session")
def video_frames() -> list[np.ndarray]:
    """Eight consecutive frames of a synthetic video, RGB uint8 at the tiny models' size."""
    from yolactedge.data.synthetic_video import render_frames

    return [image for image, *_ in render_frames(3, 0, SIZE, 8)]


@pytest.fixture(scope="session")
def tiny_pth(tiny_model, model_dir) -> Path:
    from yolactedge.model.checkpoint import save_checkpoint

    return save_checkpoint(tiny_model, model_dir / "tiny.pth")


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model, model_dir) -> Path:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxsim")
    from yolactedge.export.onnx import export_onnx

    path = model_dir / "tiny.onnx"
    export_onnx(tiny_model, path, check=False, progress=False)
    return path


@pytest.fixture(scope="session")
def tiny_tflite(tiny_onnx, model_dir) -> dict[str, Path]:
    """{"fp32", "fp16", "int8"} → path: the exporter's own conversion functions (onnx2tf in memory)."""
    pytest.importorskip("onnx2tf")
    pytest.importorskip("ai_edge_litert")
    from yolactedge.export.converter import keras_to_tflite
    from yolactedge.export.onnx2tf_step import onnx_to_keras

    workdir = model_dir / "onnx2tf"
    workdir.mkdir()
    keras_model = onnx_to_keras(tiny_onnx, workdir, simplified=True)
    paths = {}
    for precision, calib in (("fp32", None), ("fp16", None), ("int8", synthetic(8, seed=11))):
        paths[precision] = model_dir / f"tiny_{precision}.tflite"
        paths[precision].write_bytes(keras_to_tflite(keras_model, precision, calib, progress=False))
    return paths


@pytest.fixture(scope="session")
def scenes() -> list[np.ndarray]:
    """Four RGB uint8 test images, 240x320 (not the model's size, so the Detector resizes)."""
    import cv2

    return [cv2.resize(image, (320, 240), interpolation=cv2.INTER_LINEAR) for image in synthetic(4, seed=5)]


@pytest.fixture(scope="session")
def edit_tflite():
    """edit_tflite(source, target, edit): copy a .tflite with `edit(model)` applied to its flatbuffer object
    model (TF's flatbuffer_utils), e.g. to rename or drop outputs."""
    from tensorflow.lite.tools import flatbuffer_utils

    def edit_copy(source: Path, target: Path, edit) -> Path:
        model = flatbuffer_utils.read_model_from_bytearray(bytearray(source.read_bytes()))
        edit(model)
        target.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
        return target

    return edit_copy


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """The demo preset at 96x96, untrained: a real checkpoint file for the CLI verbs, fast to run."""
    pytest.importorskip("torch")
    from yolactedge import build_model, save_checkpoint

    return save_checkpoint(build_model("yolact_edge_demo", input_size=96),
                           tmp_path_factory.mktemp("checkpoint") / "tiny.pth")


@pytest.fixture(scope="session")
def tiny_video_checkpoint(tmp_path_factory) -> Path:
    """The MobileNetV2 video preset with the demo's classes at 96x96, untrained: a video checkpoint for the CLI
    verbs (the synthetic videos' categories)."""
    pytest.importorskip("torch")
    from yolactedge import build_model, save_checkpoint
    from yolactedge.config import DEMO_CLASSES, get_preset

    config = get_preset("yolact_edge_vid_mobilenetv2").replace(num_classes=len(DEMO_CLASSES) + 1,
                                                               class_names=DEMO_CLASSES)
    return save_checkpoint(build_model(config, input_size=96),
                           tmp_path_factory.mktemp("video checkpoint") / "tiny_video.pth")
