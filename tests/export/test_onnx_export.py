"""ONNX export: interface, metadata, onnxruntime vs PyTorch, atomic writes, and one-line errors for bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from yolactedge import build_model  # noqa: E402
from yolactedge.config import DEMO_CLASSES  # noqa: E402
from yolactedge.export import ExportError, export_model  # noqa: E402
from yolactedge.export.onnx import check_images, export_onnx, inspect_onnx, read_metadata, run_onnx, run_torch  # noqa: E402

from export_models import SIZE, tiny_model  # noqa: E402

ANCHORS = 3 * (12 * 12 + 6 * 6 + 3 * 3 + 2 * 2 + 1)  # levels 12, 6, 3, 2, 1 at 96


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return export_model(tiny, "onnx", output=path, progress=False)


def test_interface_names_and_shapes(exported):
    info = inspect_onnx(exported.path)
    assert info["inputs"] == [{"name": "input", "shape": [1, 3, SIZE, SIZE], "dtype": "float32"}]
    shapes = {o["name"]: o["shape"] for o in info["outputs"]}
    assert [o["name"] for o in info["outputs"]] == ["boxes", "scores", "masks", "proto"]
    assert shapes == {"boxes": [1, ANCHORS, 4], "scores": [1, 6, ANCHORS], "masks": [1, ANCHORS, 32],
                      "proto": [1, 24, 24, 32]}
    assert info["opset"] == 17
    assert exported.format == "onnx" and exported.precision == "fp32" and exported.size_bytes > 0


def test_metadata_is_embedded(exported):
    meta = read_metadata(exported.path)
    assert json.loads(meta["class_names"]) == list(DEMO_CLASSES)
    assert meta["input_size"] == str(SIZE)
    assert meta["preset"] == "yolact_edge_demo"
    assert meta["yolactedge_version"]
    assert json.loads(meta["config"])["input_size"] == SIZE
    assert inspect_onnx(exported.path)["config"].class_names == DEMO_CLASSES


def test_onnxruntime_matches_pytorch_on_unseen_images(tiny, exported):
    assert exported.onnx_check["max_relative_error"] < 1e-4
    images = check_images(SIZE, count=2, seed=99)
    for ours, ref in zip(run_onnx(exported.path, images), run_torch(tiny, images)):
        for name in ("boxes", "scores", "masks", "proto"):
            scale = np.abs(ref[name]).max()
            assert scale > 0
            assert np.abs(ours[name] - ref[name]).max() / scale < 1e-4, name
    # outputs are not trivial: scores and masks vary across anchors
    assert ref["scores"].std() > 1e-3 and ref["masks"].std() > 1e-2


def test_failed_check_leaves_nothing(tiny, tmp_path):
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match="ONNX check failed"):
        export_onnx(tiny, out, tolerance=-1.0, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_imgsz_reexports_at_another_size(tiny, tmp_path):
    result = export_model(tiny, "onnx", imgsz=128, output=tmp_path, progress=False)
    assert result.path == tmp_path / "yolact_edge_demo.onnx"
    shapes = {o["name"]: o["shape"] for o in inspect_onnx(result.path)["outputs"]}
    assert shapes["proto"] == [1, 32, 32, 32]
    assert result.input_size == 128


def test_target_graph_forms(tiny, tmp_path):
    """The imx93 form: at 100 the FPN upsamples 4→7 and 7→13, which become fixed-weight convolutions (the
    protonet's exact 2x stays a Resize), and the input's division by std moves into the first convolution.
    Both match PyTorch; the model is left as it was."""
    from yolactedge.export.onnx import with_input_size

    model = with_input_size(tiny, 100)
    std, weight = model.pixel_std.clone(), next(model.backbone.parameters()).clone()
    counts = {}
    for form in (False, True):
        path = tmp_path / f"form_{form}.onnx"
        info = export_onnx(model, path, separable_upsampling=form, fold_input_std=form, progress=False)
        assert info["check"]["max_relative_error"] < 1e-4  # against the PyTorch model as it was
        ops = [node.op_type for node in onnx.load(str(path)).graph.node]
        counts[form] = (ops.count("Resize"), ops.count("Div"), ops.count("Sub"))
    (resizes, divs, subs), folded = counts[False], counts[True]
    assert resizes == 3 and folded == (1, divs - 1, subs)  # the boxes' decoding keeps its own Div and Sub
    assert model.fpn_phase_1.separable_upsampling is False
    assert torch.equal(model.pixel_std, std) and torch.equal(next(model.backbone.parameters()), weight)


@pytest.mark.parametrize("implicit_padding", [False, True])
@pytest.mark.parametrize("preset", ["yolact_edge_mobilenetv2", "yolact_edge_resnet50"])
def test_target_forms_of_the_first_convolution_keep_the_outputs(preset, implicit_padding):
    """Zero padding commutes with the per-channel 1/std, and a stride-2 odd kernel padded (k-1)/2 on an even image
    equals the (k+1)-wide kernel with a zero far row and column: both forms of the first convolution keep the
    outputs on either backbone (3x3 MobileNetV2 stem, 7x7 ResNet stem), and the model is put back as it was."""
    from yolactedge.export.onnx import _image_conv, graph_form

    model = build_model(preset, input_size=64).eval()
    conv = _image_conv(model)
    weight, kernel = conv.weight, conv.kernel_size
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        before = model(image)
        with graph_form(model, separable_upsampling=False, fold_input_std=True,
                        implicit_image_padding=implicit_padding):
            assert conv.kernel_size[0] == kernel[0] + implicit_padding
            folded = model(image)
    for a, b in zip(before, folded):
        assert float((a - b).abs().max()) <= 1e-4 * max(float(a.abs().max()), 1.0)
    assert conv.weight is weight and conv.kernel_size == kernel


def test_implicit_image_padding_leaves_odd_images_alone():
    """On an odd-sized image the grown kernel would shift the output grid, so the kernel stays as it is."""
    from yolactedge.export.onnx import _image_conv, graph_form

    model = build_model("yolact_edge_mobilenetv2", input_size=65).eval()
    with graph_form(model, separable_upsampling=False, fold_input_std=False, implicit_image_padding=True):
        assert _image_conv(model).kernel_size == (3, 3)


@pytest.mark.slow
def test_model_card_shapes_at_550(tmp_path):
    result = export_model(build_model("yolact_edge_mobilenetv2"), "onnx", output=tmp_path / "m.onnx", progress=False)
    shapes = {o["name"]: o["shape"] for o in result.outputs}
    assert shapes == {"boxes": [1, 19248, 4], "scores": [1, 80, 19248], "masks": [1, 19248, 32],
                      "proto": [1, 138, 138, 32]}


# --- bad input: one-line ExportError (a ValueError), nothing written ---------------------------------------------

def _one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize(("fmt", "precision", "target", "expected"), [
    ("onnx", "int8", None, "float32 only"),
    ("onnx", None, "imx8mp", "needs --format tflite"),
    ("tflite", "fp32", "imx93", "builds int8 graphs for its NPU"),
    ("tflite", "fp16", "imx8mp", "builds int8 graphs for its NPU"),
    ("tflite", "int16x8", "imx93", "builds int8 graphs for its NPU"),
    ("coreml", None, None, "unknown format"),
    ("tflite", "int4", None, "unknown precision"),
    ("tflite", "int8", "rpi5", "unknown target"),
    ("onnx", None, "cpu", "needs --format tflite"),
])
def test_unsupported_combinations(tiny, tmp_path, fmt, precision, target, expected):
    with pytest.raises(ExportError) as excinfo:
        export_model(tiny, fmt, precision=precision, target=target, output=tmp_path / "out", progress=False)
    assert expected in _one_line_error(excinfo)
    assert list(tmp_path.iterdir()) == []


def test_cpu_target_takes_every_tflite_precision():
    """A CPU runs float files too; only the NPU targets need int8 (the default)."""
    from yolactedge.export.pipeline import check_request

    assert [check_request("tflite", p, "cpu") for p in (None, "fp32", "fp16", "int16x8")] == [
        "int8", "fp32", "fp16", "int16x8"]


def test_checkpoint_of_another_network(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 512)}, path)
    with pytest.raises(ExportError) as excinfo:
        export_model(path, "onnx", output=tmp_path / "out.onnx", progress=False)
    assert "YOLACT-Edge" in _one_line_error(excinfo)
    assert not (tmp_path / "out.onnx").exists()


def test_garbage_and_missing_checkpoints(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(ExportError) as excinfo:
        export_model(garbage, "onnx", progress=False)
    _one_line_error(excinfo)
    with pytest.raises(ExportError, match="no such file"):
        export_model(tmp_path / "missing.pth", "onnx", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.pth"]


def test_onnx_of_another_network(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "other",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 224, 224])],
    )
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), path)
    with pytest.raises(ExportError) as excinfo:
        export_model(path, "tflite", output=tmp_path / "out.tflite", progress=False)
    assert "not a YOLACT-Edge ONNX model" in _one_line_error(excinfo)
    assert not (tmp_path / "out.tflite").exists()


def test_unwritable_output_path(tiny, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ExportError) as excinfo:
        export_model(tiny, "onnx", output=blocker / "sub" / "m.onnx", progress=False)
    assert "cannot write" in _one_line_error(excinfo)


def test_bad_imgsz(tiny):
    with pytest.raises(ExportError, match="imgsz"):
        export_model(tiny, "onnx", imgsz=16, progress=False)
