"""Every backend on the same tiny model: same detections as PyTorch, inputs quantized with the model's own
parameters, outputs found by name and by shape, class names carried by each format, one-line errors."""
from __future__ import annotations

import ctypes.util
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from yolactedge.config import DEMO_CLASSES
from yolactedge.runtime import RAW_OUTPUTS, Detector, ModelError


def assert_one_line(exc: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(exc.value)
    assert message and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(K, 4) x (M, 4) pixel boxes → (K, M) IoU."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area = lambda boxes: np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-9)


def matched_fraction(reference, other, iou: float = 0.8) -> float:
    """Share of the reference detections that `other` finds too: same class and box IoU above `iou`."""
    if len(reference) == 0:
        return 1.0 if len(other) == 0 else 0.0
    if len(other) == 0:
        return 0.0
    same_class = reference.class_ids[:, None] == other.class_ids[None, :]
    return float(((box_iou(reference.boxes, other.boxes) * same_class).max(axis=1) > iou).mean())


def assert_same_detections(reference, other) -> None:
    """Float-exact backends: identical detections up to float noise (pixel boxes are truncated to whole pixels)."""
    assert len(other) == len(reference) > 0
    np.testing.assert_array_equal(other.class_ids, reference.class_ids)
    np.testing.assert_allclose(other.scores, reference.scores, atol=1e-5)
    assert np.abs(other.boxes - reference.boxes).max() <= 1.0
    union = np.logical_or(other.masks, reference.masks).sum(axis=(1, 2))
    inter = np.logical_and(other.masks, reference.masks).sum(axis=(1, 2))
    assert (inter[union > 0] / union[union > 0]).min() > 0.98


@pytest.fixture(scope="module")
def reference(tiny_pth, scenes):
    """(raw outputs, detections) of the PyTorch backend for each scene."""
    detector = Detector(tiny_pth)
    return [(detector.raw(scene), detector(scene).detections) for scene in scenes]


# --- agreement with PyTorch ---------------------------------------------------------------------------------------

def test_torch_backend_from_checkpoint_and_module(tiny_model, tiny_pth, reference, scenes):
    from_module = Detector(tiny_model)
    assert from_module.backend.name == "torch" and from_module.input_size == (128, 128)
    assert from_module.class_names == DEMO_CLASSES
    for scene, (_, detections) in zip(scenes, reference):
        assert len(detections) > 10  # the tiny model does detect things: the comparisons below are not vacuous
        assert_same_detections(detections, from_module(scene).detections)


@pytest.mark.parametrize("kind", ["onnx", "tflite-fp32"])
def test_float_backends_match_torch(kind, tiny_onnx, tiny_tflite, reference, scenes):
    path = tiny_onnx if kind == "onnx" else tiny_tflite["fp32"]
    detector = Detector(path)
    assert detector.backend.name == ("onnxruntime" if kind == "onnx" else "litert")
    for scene, (raw, detections) in zip(scenes, reference):
        got = detector.raw(scene)
        for role, expected, actual in zip(RAW_OUTPUTS, raw, got):
            assert actual.dtype == np.float32 and actual.shape == expected.shape, role
            np.testing.assert_allclose(actual, expected, atol=1e-4, err_msg=role)
        assert_same_detections(detections, detector(scene).detections)


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_reduced_precision_is_close_to_torch(precision, tiny_tflite, tiny_pth, scenes):
    """Quantized models: about as many detections, and most of them the same object (same class, IoU > 0.8)."""
    options = {"score_threshold": 0.3}
    torch_detector = Detector(tiny_pth, **options)
    detector = Detector(tiny_tflite[precision], **options)
    spec = detector.backend.input_spec
    expected_dtype = "int8" if precision == "int8" else "float32"  # fp16 keeps a float32 input
    assert (spec.layout, spec.dtype.name, spec.size) == ("NHWC", expected_dtype, (128, 128))
    for scene in scenes:
        expected, got = torch_detector(scene).detections, detector(scene).detections
        assert abs(len(got) - len(expected)) <= 0.15 * len(expected)
        assert matched_fraction(expected, got) >= 0.75


# --- inputs and outputs ---------------------------------------------------------------------------------------------

def test_int8_input_quantization_comes_from_the_model(tiny_tflite, edit_tflite, tmp_path, scenes):
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    detector = Detector(tiny_tflite["int8"])
    spec = detector.backend.input_spec
    assert (spec.scale, spec.zero_point) == (1.0, -128)  # the exporter's full-int8 input
    tensor = detector.backend.prepare(pixels)
    assert tensor.dtype == np.int8 and tensor.shape == (1, 16, 16, 3)
    np.testing.assert_array_equal(tensor[0].astype(int), pixels.astype(int) - 128)

    def requantize_input(model):
        subgraph = model.subgraphs[0]
        quantization = subgraph.tensors[subgraph.inputs[0]].quantization
        quantization.scale, quantization.zeroPoint = np.array([2.0], np.float32), np.array([-100], np.int64)

    edited = edit_tflite(tiny_tflite["int8"], tmp_path / "scale2.tflite", requantize_input)
    detector = Detector(edited)
    assert (detector.backend.input_spec.scale, detector.backend.input_spec.zero_point) == (2.0, -100)
    expected = np.clip(np.round(pixels.astype(float) / 2) - 100, -128, 127)
    np.testing.assert_array_equal(detector.backend.prepare(pixels)[0], expected)
    assert detector(scenes[0]).image_size == scenes[0].shape[:2]  # and it still runs


def _rename_outputs_generic(model):
    """Signature outputs renamed output_0..3 in an order unrelated to their roles; tensor names made generic."""
    signature = model.signatureDefs[0]
    for new_index, output in zip((2, 0, 3, 1), signature.outputs):
        output.name = f"output_{new_index}".encode()
    signature.inputs[0].name = b"x"
    for i, tensor in enumerate(model.subgraphs[0].tensors):
        tensor.name = f"t{i}".encode()


def _drop_signatures(model):
    model.signatureDefs = []
    for i, tensor in enumerate(model.subgraphs[0].tensors):
        tensor.name = f"t{i}".encode()


@pytest.mark.parametrize("edit", [_rename_outputs_generic, _drop_signatures], ids=["generic-names", "no-signature"])
def test_tflite_outputs_found_by_shape(edit, tiny_tflite, edit_tflite, tmp_path, scenes):
    named = Detector(tiny_tflite["fp32"])
    assert {role: info[0] for role, info in named.backend.output_info.items()} == {r: r for r in RAW_OUTPUTS}
    generic = Detector(edit_tflite(tiny_tflite["fp32"], tmp_path / "generic.tflite", edit))
    assert all(info[0] != role for role, info in generic.backend.output_info.items())
    for expected, actual in zip(named.raw(scenes[0]), generic.raw(scenes[0])):
        np.testing.assert_array_equal(actual, expected)
    assert "(output 't" in generic.describe() or "(output 'output_" in generic.describe()


def test_onnx_outputs_found_by_shape(tiny_model, tmp_path, reference, scenes):
    import torch

    class Shuffled(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            boxes, scores, masks, proto = self.model(x)
            return proto, masks, boxes, scores

    path = tmp_path / "generic names.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Shuffled(tiny_model), torch.zeros(1, 3, 128, 128), str(path), dynamo=False,
                          opset_version=17, input_names=["images"], output_names=[f"output_{i}" for i in range(4)])
    with pytest.warns(UserWarning, match="no class names"):
        detector = Detector(path)
    assert {role: info[0] for role, info in detector.backend.output_info.items()} == {
        "boxes": "output_2", "scores": "output_3", "masks": "output_1", "proto": "output_0"}
    assert detector.class_names == tuple(f"class{i}" for i in range(6))  # no metadata: generic names
    for expected, actual in zip(reference[0][0], detector.raw(scenes[0])):
        np.testing.assert_allclose(actual, expected, atol=1e-4)


@pytest.mark.parametrize("variant", ["dynamic-batch", "nhwc-uint8"])
def test_onnx_input_variants(variant, tiny_model, tmp_path, reference, scenes):
    """Dynamic dims (learned from one probe run) and an NHWC uint8 input (layout read from the shape)."""
    import torch

    class Nhwc(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x.permute(0, 3, 1, 2).float())

    path = tmp_path / f"{variant}.onnx"
    nhwc = variant == "nhwc-uint8"
    module, example = (Nhwc(tiny_model), torch.zeros(1, 128, 128, 3, dtype=torch.uint8)) if nhwc else (
        tiny_model, torch.zeros(1, 3, 128, 128))
    dynamic = None if nhwc else {name: {0: "batch"} for name in ("input", *RAW_OUTPUTS)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(path), dynamo=False, opset_version=17, input_names=["input"],
                          output_names=list(RAW_OUTPUTS), dynamic_axes=dynamic)
    detector = Detector(path)
    spec = detector.backend.input_spec
    assert (spec.layout, spec.dtype.name) == (("NHWC", "uint8") if nhwc else ("NCHW", "float32"))
    assert detector.backend.output_info["scores"][1] == (1, 6, reference[0][0].scores.shape[2])
    for expected, actual in zip(reference[0][0], detector.raw(scenes[0])):
        np.testing.assert_allclose(actual, expected, atol=1e-4)


# --- class names ----------------------------------------------------------------------------------------------------

def test_class_names_travel_with_each_format(tiny_pth, tiny_onnx, tiny_tflite, tmp_path):
    assert Detector(tiny_pth).class_names == DEMO_CLASSES  # the checkpoint's config
    assert Detector(tiny_onnx).class_names == DEMO_CLASSES  # ONNX metadata_props["class_names"]

    path = tmp_path / "named.tflite"
    path.write_bytes(tiny_tflite["int8"].read_bytes())
    with pytest.warns(UserWarning, match=r"no class names .*pass class_names=\[\.\.\.\] / --names FILE") as caught:
        assert Detector(path).class_names == tuple(f"class{i}" for i in range(6))  # no sidecar, no metadata
    assert len(caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # names given: nothing to warn about
        assert Detector(path, class_names=list("ABCDEF")).class_names == tuple("ABCDEF")
    names = ["a", "b", "c", "d", "e", "f"]
    path.with_suffix(".json").write_text(json.dumps({"class_names": names}))
    assert Detector(path).class_names == tuple(names)
    path.with_suffix(".json").write_text(json.dumps({"config": {"class_names": names[::-1]}}))
    assert Detector(path).class_names == tuple(names[::-1])  # a checkpoint-style sidecar works too
    assert Detector(path, class_names=list("ABCDEF")).class_names == tuple("ABCDEF")  # an explicit list wins
    with pytest.raises(ModelError) as exc:
        Detector(path, class_names=names[:2])
    assert_one_line(exc, "2 class names", "6 classes")
    with pytest.raises(ModelError) as exc:
        Detector(path, class_names="ABCDEF")
    assert_one_line(exc, "a list of names")
    path.with_suffix(".json").write_text(json.dumps({"class_names": names[:3]}))
    with pytest.warns(UserWarning, match="3 class names for 6 classes"):
        assert Detector(path).class_names == tuple(f"class{i}" for i in range(6))


# --- errors ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".onnx", ".tflite", ".pth"])
def test_text_file_with_a_model_suffix(suffix, tmp_path):
    path = tmp_path / f"notes{suffix}"
    path.write_text("this is a text file, not a model\n" * 20)
    with pytest.raises(ModelError) as exc:
        Detector(path)
    assert_one_line(exc, str(path))


def test_tflite_of_another_network(tiny_tflite, edit_tflite, tmp_path):
    def keep_one_output(model):
        subgraph = model.subgraphs[0]
        subgraph.outputs = subgraph.outputs[:1]
        model.signatureDefs[0].outputs = model.signatureDefs[0].outputs[:1]
        model.signatureDefs[0].outputs[0].name = b"logits"

    path = edit_tflite(tiny_tflite["fp32"], tmp_path / "classifier.tflite", keep_one_output)
    with pytest.raises(ModelError) as exc:
        Detector(path)
    assert_one_line(exc, "logits", "do not look like YOLACT-Edge's")


def test_missing_model_and_unknown_backend(tiny_onnx, tmp_path):
    with pytest.raises(ModelError) as exc:
        Detector(tmp_path / "missing.onnx")
    assert_one_line(exc, "no such model file")
    with pytest.raises(ModelError) as exc:
        Detector(tiny_onnx, backend="tensorrt")
    assert_one_line(exc, "unknown backend 'tensorrt'", "litert")
    with pytest.raises(ModelError) as exc:
        Detector(tiny_onnx, backend="litert")  # a backend that cannot read the file
    assert_one_line(exc, "not a readable TFLite model")
    assert Detector(tiny_onnx, backend="onnx").backend.name == "onnxruntime"  # aliases


def test_delegates(tiny_tflite, tiny_onnx):
    with pytest.raises(ModelError) as exc:
        Detector(tiny_tflite["int8"], delegate="/usr/lib/libvx_delegate.so")
    assert_one_line(exc, "cannot load delegate /usr/lib/libvx_delegate.so")
    libm = ctypes.util.find_library("m")
    if libm:  # a real shared library that is no TFLite delegate
        with pytest.raises(ModelError) as exc:
            Detector(tiny_tflite["int8"], delegate=libm)
        assert_one_line(exc, "cannot load delegate")
    with pytest.raises(ModelError) as exc:
        Detector(tiny_onnx, delegate="libvx_delegate.so")
    assert_one_line(exc, "litert backend")


def test_threads(tiny_tflite, tiny_onnx, scenes):
    for path in (tiny_tflite["int8"], tiny_onnx):
        assert len(Detector(path, num_threads=1)(scenes[0])) > 0
        with pytest.raises(ModelError) as exc:
            Detector(path, num_threads=0)
        assert_one_line(exc, "num_threads")


def test_onnx_and_litert_run_without_torch_or_tensorflow(tiny_onnx, tiny_tflite):
    code = f"""
import sys
import numpy as np
from yolactedge.runtime import Detector
image = np.zeros((60, 80, 3), np.uint8)
for path in ({str(tiny_onnx)!r}, {str(tiny_tflite['int8'])!r}):
    Detector(path)(image)
heavy = sorted(m for m in ("torch", "tensorflow", "onnx2tf", "tf_keras") if m in sys.modules)
print("heavy:", heavy)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "heavy: []" in result.stdout
