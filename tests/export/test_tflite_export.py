"""TFLite export of a tiny model: int8 interface and output order, fp32 accuracy, verification JSON,
no network, calibration folders, Vela, bad input."""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import stat
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("onnx2tf")
pytest.importorskip("ai_edge_litert")

from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: E402

from yolactedge.export import ExportError, export_model  # noqa: E402
from yolactedge.export import vela as vela_mod  # noqa: E402
from yolactedge.export.calibration import find_images, load_calibration_images, preprocess, synthetic_images  # noqa: E402
from yolactedge.export.converter import keras_to_tflite  # noqa: E402
from yolactedge.export.onnx2tf_step import SAMPLE_DATA_FILE, onnx_to_keras  # noqa: E402
from yolactedge.export.tflite_file import inspect_tflite, reorder_outputs, signature_outputs  # noqa: E402
from yolactedge.export.vela import run_vela, vela_available  # noqa: E402
from yolactedge.export.verify import VerificationError, open_model, run_model, verify_tflite  # noqa: E402
from yolactedge.modelmeta import read_tflite_metadata  # noqa: E402

from export_models import SIZE, tiny_model  # noqa: E402
from yolactedge.export import verify as verify_mod  # noqa: E402

REAL_THRESHOLDS = dict(verify_mod.THRESHOLDS)

ANCHORS = 582
ORDER = ["boxes", "scores", "proto", "masks"]
SHAPES = {"boxes": [1, ANCHORS, 4], "scores": [1, 6, ANCHORS], "proto": [1, 24, 24, 32], "masks": [1, ANCHORS, 32]}


def write_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Smooth random RGB images of assorted sizes, in nested folders, with assorted extension cases."""
    rng = np.random.default_rng(seed)
    suffixes = [".jpg", ".PNG", ".bmp", ".JPEG", ".png"]
    paths = []
    for i in range(count):
        h, w = int(rng.integers(60, 200)), int(rng.integers(60, 200))
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        path = folder / f"d{i % 3}" / ("deep" if i % 2 else "") / f"img{i}{suffixes[i % len(suffixes)]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        ok, encoded = cv2.imencode(".png" if path.suffix.lower() == ".png" else path.suffix.lower(), image)
        assert ok
        path.write_bytes(encoded.tobytes())
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def no_network():
    """Any connection attempt fails loudly for the module's conversions."""
    import requests

    def refuse(*args, **kwargs):
        raise RuntimeError("network access attempted during export")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket.socket, "connect_ex", refuse)
        mp.setattr(socket, "create_connection", refuse)
        mp.setattr(requests, "get", refuse)
        mp.setattr(requests.Session, "request", refuse)
        yield


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("calib")
    write_images(folder, 14)
    (folder / "d1" / "broken.jpg").write_bytes(b"this is not a jpeg")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


@pytest.fixture(scope="module", autouse=True)
def box_checks_only():
    """The tiny model has random weights: its detections are near-ties, so matching them measures NMS noise, not
    the export. Here only the box-error check gates exports; test_demo_export checks detections on a trained model."""
    with pytest.MonkeyPatch.context() as patch:
        for precision, limits in REAL_THRESHOLDS.items():
            patch.setitem(verify_mod.THRESHOLDS, precision,
                          dataclasses.replace(limits, matched=0.0, box_iou=0.0, mask_iou=0.0))
        yield


@pytest.fixture(scope="module")
def int8(tiny, calib_dir, tmp_path_factory, no_network):
    out = tmp_path_factory.mktemp("int8") / "tiny_int8.tflite"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = export_model(tiny, "tflite", precision="int8", calib=calib_dir, calib_count=12, output=out,
                              target="imx8mp", progress=False)
    return result, [str(w.message) for w in caught]


@pytest.fixture(scope="module")
def int8_cpu(tiny, calib_dir, tmp_path_factory, no_network):
    out = tmp_path_factory.mktemp("int8_cpu") / "tiny_int8_cpu.tflite"
    return export_model(tiny, "tflite", precision="int8", calib=calib_dir, calib_count=12, output=out, target="cpu",
                        progress=False)


@pytest.fixture(scope="module")
def onnx_file(tiny, tmp_path_factory):
    return export_model(tiny, "onnx", output=tmp_path_factory.mktemp("onnx") / "tiny.onnx", progress=False).path


@pytest.mark.parametrize("target", ["imx8mp", "cpu"])
def test_int8_interface(target, request):
    """NXP's interface for every target: int8 input (scale 1, zero point -128), float32 outputs in the order
    boxes, scores, proto, masks (imx93: test_imx93_export_places_everything_on_the_npu)."""
    result = request.getfixturevalue("int8")[0] if target == "imx8mp" else request.getfixturevalue("int8_cpu")
    interpreter = Interpreter(model_path=str(result.path))
    (inp,) = interpreter.get_input_details()
    assert inp["dtype"] == np.int8
    assert inp["shape"].tolist() == [1, SIZE, SIZE, 3]
    scale, zero_point = inp["quantization"]
    assert scale == pytest.approx(1.0, abs=1e-6) and zero_point == -128
    names = {index: name for name, index in signature_outputs(result.path.read_bytes()).items()}
    details = interpreter.get_output_details()
    assert [names[d["index"]] for d in details] == ORDER  # index order: boxes, scores, proto, masks
    assert [d["shape"].tolist() for d in details] == [SHAPES[n] for n in ORDER]
    assert all(d["dtype"] == np.float32 for d in details)
    assert interpreter.get_signature_list() == {"serving_default": {"inputs": ["input"], "outputs": sorted(ORDER)}}
    assert result.output_order == ORDER
    assert result.target == target and result.vela is None  # only imx93 goes through Vela
    assert result.calibration["calibrator"].startswith("fast")
    assert read_tflite_metadata(result.path)["target"] == target
    assert json.loads(result.path.with_suffix(".json").read_text())["target"] == target


def _op_input_dtypes(path: Path) -> dict[str, str]:
    """Each operator type's first input dtype (the last one listed wins)."""
    interpreter = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    return {op["op_name"]: np.dtype(tensors[op["inputs"][0]]["dtype"]).name for op in interpreter._get_ops_details()}


def test_cpu_target_keeps_softmax_and_exp_in_float(int8, int8_cpu):
    """XNNPACK has no int8 SOFTMAX or EXP: the cpu graph runs them in float, the NPU graph keeps them int8."""
    npu, cpu = _op_input_dtypes(int8[0].path), _op_input_dtypes(int8_cpu.path)
    assert (npu["SOFTMAX"], npu["EXP"]) == ("int8", "int8")
    assert (cpu["SOFTMAX"], cpu["EXP"]) == ("float32", "float32")
    assert cpu["CONV_2D"] == "int8"
    assert int8_cpu.stray_ops == []  # the float ops are by design...
    assert "SOFTMAX computes in float" in inspect_tflite(int8_cpu.path, "int8")["stray_ops"]  # ...not elsewhere
    for name in ORDER:
        assert int8_cpu.verification["outputs"][name]["max_abs"] < 0.1, name


def test_cpu_target_decodes_the_boxes_in_float(int8, int8_cpu):
    """The cpu graph computes the boxes output in float from the int8 box convolutions: no 1/255 grid, so its
    boxes are closer to the float model's than the NPU graph's; the convolutions stay int8. The summary and
    `yolactedge info` say what the target keeps in float."""
    from yolactedge.info import describe_model

    interpreter = Interpreter(model_path=str(int8_cpu.path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    boxes_index = signature_outputs(int8_cpu.path.read_bytes())["boxes"]
    (producer,) = [op for op in ops if boxes_index in op["outputs"]]
    assert producer["op_name"] != "DEQUANTIZE"
    decode_types = {op["op_name"] for op in ops if tensors[op["outputs"][0]]["dtype"] == np.float32
                    and op["op_name"] not in ("SOFTMAX", "EXP", "DEQUANTIZE")}
    assert decode_types and decode_types <= {"ADD", "SUB", "MUL", "CONCATENATION", "RESHAPE", "STRIDED_SLICE"}
    assert all(tensors[op["outputs"][0]]["dtype"] == np.int8 for op in ops if op["op_name"] == "CONV_2D")
    assert int8_cpu.stray_ops == []
    assert "float  SOFTMAX, EXP, the box decode (--target cpu" in int8_cpu.summary()
    assert "float  " not in int8[0].summary()
    assert "int8, target cpu (SOFTMAX, EXP, the box decode in float)" in describe_model(str(int8_cpu.path))
    assert "int8, target imx8mp, yolactedge" in describe_model(str(int8[0].path))
    cpu_error = int8_cpu.verification["outputs"]["boxes"]["max_scaled"]
    npu_error = int8[0].verification["outputs"]["boxes"]["max_scaled"]
    assert cpu_error < npu_error


def test_box_decode_nodes_stop_at_the_box_convolutions(onnx_file, tmp_path):
    """`box_decode_nodes` names the decode's operators of a float model, down to the boxes output, and none of
    the network's: each is a DECODE_OPS type, and every convolution is left out."""
    from yolactedge.export.box_decode import DECODE_OPS, box_decode_nodes
    from yolactedge.export.tflite_file import model_object
    from yolactedge.opprofile import op_type_name

    keras = onnx_to_keras(onnx_file, tmp_path, simplified=False)
    data = keras_to_tflite(keras, "fp32", progress=False)
    model = model_object(data)
    subgraph = model.subgraphs[0]
    by_name = {subgraph.tensors[op.outputs[0]].name.decode(): op for op in subgraph.operators}
    names = box_decode_nodes(data)
    assert names and all(op_type_name(model, by_name[n]) in DECODE_OPS for n in names)
    boxes = next(int(t) for t in subgraph.outputs if list(subgraph.tensors[t].shape) == [1, ANCHORS, 4])
    assert subgraph.tensors[boxes].name.decode() in names
    assert len(names) < len(subgraph.operators) // 2
    types = {op_type_name(model, by_name[n]) for n in names}
    assert "EXP" in types and "CONV_2D" not in types


def test_cpu_target_pads_inside_the_first_convolution(int8, int8_cpu):
    """The NPU graph pads the image with a PAD operator; the cpu graph's first convolution pads by itself (SAME),
    which spares XNNPACK a pass over the whole image."""
    npu, cpu = _op_names(int8[0].path), _op_names(int8_cpu.path)
    assert npu.count("PAD") == cpu.count("PAD") + 1
    assert npu.count("CONV_2D") == cpu.count("CONV_2D")


def _op_names(path: Path) -> list[str]:
    interpreter = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    return [op["op_name"] for op in interpreter._get_ops_details()]


def test_int8_boxes_are_quantized_over_the_image(int8):
    """The boxes are quantized over the image ([0, 1]): int8 steps of 1/255 of its side, saturating at the border."""
    result, _ = int8
    interpreter = Interpreter(model_path=str(result.path))
    interpreter.allocate_tensors()
    boxes_index = signature_outputs(result.path.read_bytes())["boxes"]
    tensors = interpreter.get_tensor_details()
    (producer,) = [op for op in interpreter._get_ops_details()
                   if boxes_index in op["outputs"] and op["op_name"] != "DELEGATE"]
    assert producer["op_name"] == "DEQUANTIZE"
    scale, zero_point = tensors[producer["inputs"][0]]["quantization"]
    assert scale == pytest.approx(1 / 255, rel=1e-3) and zero_point == -128
    (inp,) = interpreter.get_input_details()
    interpreter.set_tensor(inp["index"], np.random.default_rng(0).integers(-128, 128, inp["shape"], dtype=np.int8))
    interpreter.invoke()
    boxes = interpreter.get_tensor(boxes_index)
    assert boxes.min() >= 0.0 and boxes.max() <= 1.0 and np.unique(boxes).size > 100


def test_int8_anchor_centres_are_stored_exactly(int8):
    """The decode adds each level's anchor centres (i + 0.5) / W as an int8 constant: stored on the grid k / 2W,
    not on the tightest grid of their range, which misses them by up to half a step (0.002 of the image)."""
    from yolactedge.export.tflite_file import model_object
    from yolactedge.opprofile import op_type_name

    result, _ = int8
    model = model_object(result.path.read_bytes())
    subgraph = model.subgraphs[0]
    levels = {12: [], 6: [], 3: [], 2: [], 1: []}  # cells per side of P3..P7 at 96
    for op in subgraph.operators:
        for index in op.inputs if op_type_name(model, op) == "ADD" else ():
            tensor = subgraph.tensors[index]
            data = model.buffers[tensor.buffer].data
            if data is not None and len(data) and list(tensor.shape[-1:]) == [4]:
                stored = np.asarray(data, np.uint8).view(np.int8).astype(np.float64)
                values = (stored - tensor.quantization.zeroPoint[0]) * tensor.quantization.scale[0]
                levels[round(np.sqrt(tensor.shape[1] / 3))].append(values)
    assert all(len(found) == 1 for found in levels.values()), {k: len(v) for k, v in levels.items()}
    for side, (values,) in levels.items():
        np.testing.assert_allclose(np.unique(values), (np.arange(side) + 0.5) / side, rtol=0, atol=1e-7)
    assert result.calibration["exact_constants"] == 2  # 12 and 6 cells; 3, 2 and 1 fall on the tight grid too


def test_exact_grid_of_crafted_constants():
    from yolactedge.export.exact_constants import exact_grid

    assert exact_grid((np.arange(40) + 0.5) / 40) == (1 / 80, -128)  # P3 at 320: the centres in 80ths
    assert exact_grid(np.float32([-0.5, 0.25, 0.75])) == (0.25, -126)  # quarters from -2, zero point moved
    assert exact_grid((np.arange(200) + 0.5) / 200) is None  # 400ths: more than int8's 256 levels
    assert exact_grid(np.array([0.1, np.pi])) is None
    assert exact_grid(np.array([np.nan])) is None


def test_box_error_scales_with_the_box_side():
    """A corner off by 0.05 fails int8's 12 steps on a small box and passes on an image-wide one, whose regression
    moves its corners four times as far for the same error; the border defect (0.26 on a box of side ~1) fails."""
    from yolactedge.export.verify import BOX_SIDE_UNIT, THRESHOLDS, scaled_box_errors

    reference = np.array([[[0.40, 0.40, 0.50, 0.50], [0.00, 0.00, 1.00, 0.90], [0.00, 0.10, 0.95, 0.90]]])
    ours = reference + np.array([[[0.05, 0, 0, 0], [0, 0, 0, 0.05], [0.26, 0, 0, 0]]])
    errors = scaled_box_errors(ours, reference)
    np.testing.assert_allclose(errors, [[0.05, 0.05 * BOX_SIDE_UNIT, 0.26 * BOX_SIDE_UNIT / 0.95]], rtol=1e-6)
    limit = THRESHOLDS["int8"].box_error
    assert errors[0, 1] < limit < min(errors[0, 0], errors[0, 2])


def test_decode_ranges_bound_every_combination_of_their_inputs():
    """int16x8's decode ranges come from the inputs' ranges (box_ranges): a sum covers both extremes at once, which
    min/max over the calibration images rarely sees, and a constant operand counts with its extreme values."""
    from yolactedge.export.box_ranges import _interval

    shift, half = (-0.09, 0.09), (0.04, 0.23)
    assert _interval("ADD", [shift, half]) == pytest.approx((-0.05, 0.32))
    assert _interval("SUB", [shift, half]) == pytest.approx((-0.32, 0.05))
    assert _interval("MUL", [(-4.8, 5.3), np.float32([0.1 * 0.05, 0.1 * 0.1])]) == pytest.approx((-0.048, 0.053))
    assert _interval("EXP", [(-1.0, 1.0)]) == pytest.approx((np.exp(-1.0), np.exp(1.0)))
    assert _interval("CONCATENATION", [shift, half]) == (-0.09, 0.23)
    assert _interval("STRIDED_SLICE", [shift]) == shift
    assert _interval("CONV_2D", [shift, half, half]) is None


def test_int8_graph_is_lean(int8):
    result, _ = int8
    ops = result.op_histogram
    assert not [op for op in ops if op.startswith("Flex") or op in ("CUSTOM", "GATHER", "GATHER_ND")]
    assert ops.get("TRANSPOSE", 0) <= 1
    assert ops["DEQUANTIZE"] == 4  # one per float output, nothing mid-graph
    assert result.stray_ops == []


def test_int8_verification_json(int8):
    result, _ = int8
    path = result.path.with_suffix(".verify.json")
    assert result.verify_json == path and path.is_file()
    report = json.loads(path.read_text())
    assert report["model"] == result.path.name
    assert report["reference"].startswith("onnxruntime")
    assert report["output_order"] == ORDER
    assert report["input_quantization"] == [1.0, -128]
    assert "held-out" in report["images"]
    for name in ORDER:
        assert 0 < report["outputs"][name]["max_abs"] < 0.1, name  # quantisation error, not a layout bug
    assert report["passed"] and report["precision"] == "int8" and report["runtime"].startswith("litert")
    assert {c["check"] for c in report["checks"]} == {"box error", "matched detections", "mean box IoU",
                                                       "mean mask IoU"}


def test_written_files_get_default_permissions(int8, onnx_file):
    result, _ = int8
    umask = os.umask(0)
    os.umask(umask)
    for path in (result.path, result.path.with_suffix(".json"), result.verify_json, onnx_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name


def test_failed_verification_keeps_the_existing_file(onnx_file, tmp_path, monkeypatch, no_network):
    from yolactedge.export import verify

    monkeypatch.setitem(verify.THRESHOLDS, "fp32", verify.Thresholds(matched=1.01, box_iou=0, mask_iou=0, box_error=1))
    out = tmp_path / "model.tflite"
    out.write_bytes(b"the previous export")
    with pytest.raises(VerificationError, match="matched detections"):
        export_model(onnx_file, "tflite", precision="fp32", output=out, progress=False)
    assert out.read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite"]


def test_verify_only_against_another_model_fails(int8, tmp_path, capsys, monkeypatch):
    """An unrelated reference ("demo": other weights) matches nothing: exit 1, one line, the report kept."""
    from yolactedge.cli import main

    monkeypatch.setitem(verify_mod.THRESHOLDS, "int8", REAL_THRESHOLDS["int8"])
    result, _ = int8
    model = tmp_path / result.path.name
    model.write_bytes(result.path.read_bytes())
    report = model.with_suffix(".verify.json")
    report.write_text(result.verify_json.read_text())
    before = report.read_text()
    assert main(["export", str(model), "--verify-only", "--reference", "demo"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: verification failed") and "reference matched" in err[0]
    assert report.read_text() == before


@pytest.mark.parametrize("fmt, name", [("onnx", "x.tflite"), ("tflite", "x.onnx"), ("tflite", "x")])
def test_output_suffix_must_match_the_format(fmt, name, tmp_path, capsys):
    from yolactedge.cli import main

    assert main(["export", "demo", "--format", fmt, "--output", str(tmp_path / name)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --output") and f".{fmt}" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_int8_calibration_report(int8, calib_dir):
    result, messages = int8
    assert result.calibration["used"] == 12 and result.calibration["found"] == 15
    streams = result.calibration["equalised_streams"]
    assert streams["applicable"] and sorted(streams["disparity"]) == [1, 2, 3, 4, 5, 6]
    assert streams["stages"] == [s for s, r in streams["disparity"].items() if r >= streams["threshold"]]
    assert "  streams equalised before calibration: stage" in result.summary() if streams["stages"] else \
        "  streams not equalised: no stage's largest channel" in result.summary()
    sidecar = json.loads(result.path.with_suffix(".json").read_text())["equalised_streams"]
    assert sidecar["stages"] == streams["stages"] and len(sidecar["disparity"]) == 6
    assert any("unreadable" in m and "broken.jpg" in m for m in messages)
    assert not (Path.cwd() / SAMPLE_DATA_FILE).exists()  # onnx2tf's sample file stayed in the temp dir


def test_fp32_from_onnx_matches_onnxruntime(onnx_file, tmp_path, no_network):
    result = export_model(onnx_file, "tflite", precision="fp32", output=tmp_path / "fp32.tflite", verify=False,
                          progress=False)
    assert result.inputs[0]["dtype"] == "float32" and result.output_order == ORDER
    report = verify_tflite(result.path, onnx_file, count=2, seed=5, print_table=False)
    for name in ORDER:
        assert report["outputs"][name]["max_abs"] < 1e-3, name
    assert Path(report["json"]) == tmp_path / "fp32.verify.json"


def test_reorder_outputs_fixes_any_order(int8, tmp_path):
    result, _ = int8
    data = result.path.read_bytes()
    shuffled = reorder_outputs(data, ["masks", "proto", "scores", "boxes"])
    assert signature_outputs(shuffled) == signature_outputs(data)
    names = {index: name for name, index in signature_outputs(shuffled).items()}
    interpreter = Interpreter(model_content=shuffled)
    assert [names[d["index"]] for d in interpreter.get_output_details()] == ["masks", "proto", "scores", "boxes"]
    images = np.random.default_rng(0).integers(0, 256, (1, SIZE, SIZE, 3), dtype=np.uint8)
    restored = tmp_path / "restored.tflite"
    restored.write_bytes(reorder_outputs(shuffled, ORDER))
    a = run_model(open_model(result.path), images)
    b = run_model(open_model(restored), images)
    for name in ORDER:
        np.testing.assert_array_equal(a[0][name], b[0][name])


def test_fast_calibration_matches_tensorflow_calibrator(onnx_file, tmp_path, no_network):
    """The XNNPACK min/max pass stands in for TensorFlow's calibrator: same graph, same interface, same accuracy.

    (Not bit-identical: TensorFlow's calibrator reads some tensors after in-place kernels overwrote them, which
    widens their ranges; the fast pass records the true ranges.)"""
    images = synthetic_images(16, 3, SIZE, progress=False)
    test = synthetic_images(4, 4, SIZE, progress=False)
    keras_model = onnx_to_keras(onnx_file, tmp_path, simplified=True)
    results = {}
    for calibrator in ("fast", "tensorflow"):
        info: dict = {}
        data = keras_to_tflite(keras_model, "int8", images, progress=False, calibrator=calibrator, info=info)
        path = tmp_path / f"{calibrator}.tflite"
        path.write_bytes(data)
        report = verify_tflite(path, onnx_file, test, json_path=False, print_table=False)
        results[calibrator] = (info, inspect_tflite(data, "int8"), report)
    (fast_info, fast, fast_report), (tf_info, tf, tf_report) = results["fast"], results["tensorflow"]
    assert fast_info["calibrator"].startswith("fast") and tf_info["calibrator"] == "TensorFlow"
    assert fast["op_histogram"] == tf["op_histogram"] and fast["inputs"][0]["quantization"] == [1.0, -128]
    assert fast["inputs"][0]["quantization"] == tf["inputs"][0]["quantization"]
    for name in ORDER:
        ours, theirs = fast_report["outputs"][name], tf_report["outputs"][name]
        assert ours["mean_abs"] <= 1.25 * theirs["mean_abs"] + 1e-4, name
        assert ours["max_abs"] <= 1.5 * theirs["max_abs"] + 1e-3, name


def test_int8_from_an_onnx_file_says_its_streams_are_not_equalised(onnx_file, calib_dir, tmp_path, no_network):
    result = export_model(onnx_file, "tflite", precision="int8", calib=calib_dir, calib_count=8, verify=False,
                          output=tmp_path / "m.tflite", progress=False)
    streams = result.calibration["equalised_streams"]
    assert not streams["applicable"] and streams["stages"] == []
    assert "streams not equalised: an ONNX file as the source" in result.summary()


def test_imx93_without_vela_fails_cleanly(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(vela_mod, "_vela_command", lambda: None)
    with pytest.raises(ExportError, match="pip install ethos-u-vela") as excinfo:
        export_model(tiny, "tflite", target="imx93", output=tmp_path / "m.tflite", progress=False)
    assert "\n" not in str(excinfo.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not vela_available(), reason="ethos-u-vela is not installed")
def test_vela_compiles_the_int8_model(int8, tmp_path):
    result, _ = int8
    vela = run_vela(result.path, tmp_path)
    compiled = Path(vela["path"])
    assert compiled.is_file() and compiled.stat().st_size > 0
    assert vela["accelerator"] == "ethos-u65-256"
    assert float(vela["summary"]["Estimated inference time"].removesuffix(" ms")) > 0  # from Vela's summary CSV
    from yolactedge.info import describe_model

    described = describe_model(str(compiled))
    assert "custom op ethos-u" in described and "output      boxes" in described


# --- calibration folders (no TensorFlow) -------------------------------------------------------------------------

def test_find_images_is_recursive_and_case_insensitive(tmp_path):
    written = write_images(tmp_path, 6)
    (tmp_path / "x.gif").write_bytes(b"GIF89a")
    (tmp_path / "readme.txt").write_text("x")
    assert sorted(find_images(tmp_path)) == sorted(written)


def test_calibration_images_are_preprocessed_as_at_inference(tmp_path):
    paths = write_images(tmp_path, 10)
    images, info = load_calibration_images(tmp_path, count=10, seed=3, size=SIZE, progress=False)
    assert images.shape == (10, SIZE, SIZE, 3) and images.dtype == np.uint8
    first = tmp_path / info["files"][0]
    bgr = cv2.imread(str(first))
    expected = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(images[0], expected)
    np.testing.assert_array_equal(preprocess(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), SIZE), expected)
    again, info2 = load_calibration_images(tmp_path, count=10, seed=3, size=SIZE, progress=False)
    assert info2["files"] == info["files"]  # the seed fixes the choice
    assert sorted(info["files"]) == sorted(p.relative_to(tmp_path).as_posix() for p in paths)


def test_random_subset_with_seed(tmp_path):
    write_images(tmp_path, 20)
    _, a = load_calibration_images(tmp_path, count=10, seed=1, size=32, progress=False)
    _, b = load_calibration_images(tmp_path, count=10, seed=2, size=32, progress=False)
    assert len(a["files"]) == 10 and a["files"] != b["files"]


def test_unreadable_images_are_skipped_with_a_warning(tmp_path):
    write_images(tmp_path, 11)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        images, info = load_calibration_images(tmp_path, count=11, seed=0, size=32, progress=False)
    assert len(images) == 11 and sorted(info["unreadable"]) == ["bad.png", "empty.jpg"]


def test_empty_and_too_small_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="no calibration images"):
        load_calibration_images(tmp_path / "empty", size=32, progress=False)
    with pytest.raises(ExportError, match="not found"):
        load_calibration_images(tmp_path / "missing", size=32, progress=False)
    write_images(tmp_path / "few", 4)
    with pytest.raises(ExportError, match="only 4 usable calibration image") as excinfo:
        load_calibration_images(tmp_path / "few", count=100, size=32, progress=False)
    assert "\n" not in str(excinfo.value) and "add images to the folder or lower --calib-count" in str(excinfo.value)
    write_images(tmp_path / "some", 12)
    with pytest.warns(UserWarning, match="fewer than the 50 requested"):
        images, _ = load_calibration_images(tmp_path / "some", count=50, size=32, progress=False)
    assert len(images) == 12


def test_export_with_empty_calib_folder_writes_nothing(tiny, tmp_path):
    (tmp_path / "calib").mkdir()
    out = tmp_path / "out" / "m.tflite"
    with pytest.raises(ExportError, match="no calibration images"):
        export_model(tiny, "tflite", precision="int8", calib=tmp_path / "calib", output=out, progress=False)
    assert not out.exists() and not list(out.parent.glob("*"))


# --- the other precisions (a conversion each) ----------------------------------------------------------------------

@pytest.mark.parametrize("precision", ["fp16", "int16x8"])
def test_float_io_precisions(onnx_file, tmp_path, precision, no_network):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # synthetic calibration warning
        result = export_model(onnx_file, "tflite", precision=precision, calib_count=10,
                              output=tmp_path / f"{precision}.tflite", progress=False)
    assert result.inputs[0]["dtype"] == "float32" and result.output_order == ORDER
    assert all(o["dtype"] == "float32" for o in result.outputs)
    if precision == "int16x8":
        assert result.calibration["calibrator"].startswith("fast")
    limit = {"fp16": 5e-3, "int16x8": 0.05}[precision]
    for name in ORDER:
        assert result.verification["outputs"][name]["max_abs"] < limit, name
    assert result.stray_ops == []


@pytest.mark.skipif(not vela_available(), reason="ethos-u-vela is not installed")
def test_imx93_export_places_everything_on_the_npu(tiny, calib_dir, tmp_path, no_network):
    """At 100 the FPN upsamples 4→7 and 7→13 (not 2x, which Vela would leave on the CPU): the imx93 graph's
    separable form puts them on the NPU, so only the four output DEQUANTIZE stay on the CPU, in one partition."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = export_model(tiny, "tflite", target="imx93", calib=calib_dir, calib_count=12, imgsz=100,
                              output=tmp_path, progress=False)
    assert result.path == tmp_path / "yolact_edge_demo_int8_vela.tflite" and result.path.is_file()
    assert result.vela["accelerator"] == "ethos-u65-256"
    assert result.vela["output_order"] == ORDER
    assert result.inputs[0]["dtype"] == "int8" and [o["dtype"] for o in result.outputs] == ["float32"] * 4
    assert result.vela["summary"]["CPU operator types"] == {"DEQUANTIZE": 4}
    assert result.vela["placement"] == {"npu_partitions": 1, "cpu_operators": {"DEQUANTIZE": 4},
                                        "cpu_to_npu_handovers": 0}
    assert result.op_histogram == {"DEQUANTIZE": 4, "ethos-u": 1}  # the result describes the file written: Vela's
    assert result.size_bytes == result.path.stat().st_size
    summary = result.summary()
    assert "  vela   ethos-u65-256: NPU operators" in summary and "(DEQUANTIZE 4)" in summary
    assert "1 NPU partition(s), 0 CPU→NPU handover(s)" in summary
    assert read_tflite_metadata(result.path)["target"] == "imx93"
    sidecar = json.loads(result.path.with_suffix(".json").read_text())
    assert sidecar["target"] == "imx93" and sidecar["vela"]["placement"] == result.vela["placement"]
    assert sidecar["vela"]["summary"]["Estimated inference time"].endswith(" ms")
    assert json.loads(result.verify_json.read_text())["note"].startswith("verified the int8 model before Vela")
    assert "  int16  the boxes output's last ADD per level" in summary
    for name in ORDER:
        assert result.verification["outputs"][name]["max_abs"] < 0.1, name
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "yolact_edge_demo_int8_vela.json", "yolact_edge_demo_int8_vela.tflite",
        "yolact_edge_demo_int8_vela.verify.json"]


def test_int16_box_tail_refuses_a_graph_it_does_not_know(int8_cpu):
    """The cpu graph's boxes come from a float CONCATENATION, not a DEQUANTIZE of int8 levels: refused by name."""
    from yolactedge.export.int16_tail import with_int16_box_tail

    with pytest.raises(ExportError, match="int16 box tail: the boxes output is not a DEQUANTIZE"):
        with_int16_box_tail(int8_cpu.path.read_bytes(), twin=False)


def test_int16_box_tail_is_the_same_model_as_its_twin(int8, tmp_path):
    """The imx93 graph's int16 box tail: per level a QUANTIZE int8 → int16 (which LiteRT refuses: Vela runs it),
    the levels' ADD, CONCATENATION and the output's DEQUANTIZE in int16. Its twin (DEQUANTIZE + QUANTIZE
    hand-overs) runs in LiteRT and gives the same boxes as the int8 file to within the int8 output's rounding,
    off its 1/255 grid; the other outputs are untouched."""
    from yolactedge.export.int16_tail import with_int16_box_tail

    data = int8[0].path.read_bytes()
    real, twin = with_int16_box_tail(data, twin=False), with_int16_box_tail(data, twin=True)
    with pytest.raises((RuntimeError, ValueError), match="quantize"):
        Interpreter(model_content=real).allocate_tensors()
    outputs = {}
    for name, model in (("int8", data), ("twin", twin)):
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(model)
        interpreter = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        interpreter.allocate_tensors()
        (inp,) = interpreter.get_input_details()
        interpreter.set_tensor(inp["index"], np.random.default_rng(1).integers(-128, 128, inp["shape"], np.int8))
        interpreter.invoke()
        index = signature_outputs(model)
        outputs[name] = {k: interpreter.get_tensor(v) for k, v in index.items()}
        if name == "twin":
            tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
            (producer,) = [op for op in interpreter._get_ops_details() if index["boxes"] in op["outputs"]]
            assert producer["op_name"] == "DEQUANTIZE" and tensors[producer["inputs"][0]]["dtype"] == np.int16
    for name in ("scores", "proto", "masks"):
        assert np.array_equal(outputs["int8"][name], outputs["twin"][name]), name
    int8_boxes, twin_boxes = outputs["int8"]["boxes"], outputs["twin"]["boxes"]
    inside = (twin_boxes > 0.01) & (twin_boxes < 0.99)
    assert np.abs(int8_boxes - twin_boxes)[inside].max() <= 0.5 / 255 + 1e-4
    assert np.abs(np.round(twin_boxes[inside] * 255) - twin_boxes[inside] * 255).max() > 0.1  # off the int8 grid


# --- metadata -------------------------------------------------------------------------------------------------------

def test_int8_file_describes_itself(int8):
    """The exporter embeds the ONNX metadata plus colour order, normalisation, precision and target."""
    from yolactedge.config import DEMO_CLASSES, PIXEL_MEAN, PIXEL_STD
    from yolactedge.modelmeta import read_tflite_metadata

    result, _ = int8
    meta = read_tflite_metadata(result.path)
    assert meta["class_names"] == list(DEMO_CLASSES) and meta["num_classes"] == len(DEMO_CLASSES) + 1
    assert meta["preset"] == "yolact_edge_demo" and meta["input_size"] == SIZE and meta["yolactedge_version"]
    assert meta["config"]["input_size"] == SIZE
    assert meta["colour_order"] == "RGB"
    assert meta["normalisation"]["mean"] == list(PIXEL_MEAN) and meta["normalisation"]["std"] == list(PIXEL_STD)
    assert (meta["precision"], meta["target"]) == ("int8", "imx8mp")


def test_metadata_reads_without_tensorflow(int8, tmp_path):
    """The runtime path (LiteRT, no TensorFlow) finds the class names in a file copied alone."""
    import subprocess
    import sys

    result, _ = int8
    alone = tmp_path / "alone.tflite"
    alone.write_bytes(result.path.read_bytes())
    code = ("import sys; sys.modules['tensorflow'] = None\n"
            "import warnings; warnings.simplefilter('error')\n"
            "from yolactedge.runtime import Detector\n"
            f"print(','.join(Detector({str(alone)!r}).class_names))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    from yolactedge.config import DEMO_CLASSES

    assert out.strip() == ",".join(DEMO_CLASSES)


def test_embedded_metadata_is_replaced_not_duplicated(int8):
    from yolactedge.export.tflite_file import embed_metadata
    from yolactedge.modelmeta import read_tflite_metadata

    result, _ = int8
    data = result.path.read_bytes()
    again = embed_metadata(data, {"class_names": ["x"]})
    assert read_tflite_metadata(again) == {"class_names": ["x"]}
    assert len(again) < len(data) + 200  # the old payload's buffer was reused
    assert signature_outputs(again) == signature_outputs(data)


def test_importing_onnx2tf_keeps_warnings_on():
    """onnx2tf's module silences every warning process-wide on import; the exporter imports it without that."""
    import subprocess
    import sys

    code = ("import warnings\n"
            "from yolactedge.export.quiet import import_onnx2tf\n"
            "import_onnx2tf()\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.warn('still heard')\n"
            "print(len(caught))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[-1] == "1"


def test_unshare_constants_gives_each_use_its_own_buffer(onnx_file, tmp_path, no_network):
    """int16x8's quantizer needs per-op constants: the prediction head's, shared by every FPN level, get copies
    and the float model still computes the same."""
    from yolactedge.export.fastcalib import unshare_constants
    from yolactedge.export.tflite_file import model_object

    keras_model = onnx_to_keras(onnx_file, tmp_path, simplified=True)
    data = keras_to_tflite(keras_model, "fp32", progress=False)

    def constant_uses(blob: bytes) -> list[int]:
        model = model_object(blob)
        subgraph = model.subgraphs[0]
        return [subgraph.tensors[i].buffer for op in subgraph.operators for i in op.inputs
                if i >= 0 and model.buffers[subgraph.tensors[i].buffer].data is not None]

    before, after = constant_uses(data), constant_uses(unshare_constants(data))
    assert len(set(before)) < len(before)  # the head's weights are shared today
    assert len(set(after)) == len(after) == len(before)
    paths = [tmp_path / "shared.tflite", tmp_path / "unshared.tflite"]
    paths[0].write_bytes(data)
    paths[1].write_bytes(unshare_constants(data))
    images = synthetic_images(1, 9, SIZE, progress=False)
    for a, b in zip(*(run_model(open_model(p), images)[0].values() for p in paths)):
        np.testing.assert_array_equal(a, b)


def test_no_equalise_converts_the_model_as_it_is(tiny_pth, calib_dir, tmp_path, capsys, no_network):
    from yolactedge.cli import main

    out = tmp_path / "plain.tflite"
    assert main(["export", str(tiny_pth), "--calib", str(calib_dir), "--calib-count", "10", "--no-verify",
                 "--no-equalise", "--output", str(out)]) == 0
    assert "streams not equalised: turned off (--no-equalise)" in capsys.readouterr().out
    sidecar = json.loads(out.with_suffix(".json").read_text())["equalised_streams"]
    assert not sidecar["applicable"] and sidecar["reason"] == "turned off (--no-equalise)"
    with pytest.warns(UserWarning, match=r"--no-equalise is only used by int8 and int16x8 .*ignored for fp32"):
        assert main(["export", str(tiny_pth), "--precision", "fp32", "--no-verify", "--no-equalise",
                     "--output", str(tmp_path / "f.tflite")]) == 0
