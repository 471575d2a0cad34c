"""TFLite export of a video model: the key-frame/warped-frame pair, its calibration on consecutive frames, its
verification, and LiteRT running it in video mode (each conversion takes ~20-40 s here: slow)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

pytest.importorskip("onnx2tf")
pytest.importorskip("ai_edge_litert")

from yolactedge.export import ExportError, export_model  # noqa: E402
from yolactedge.modelmeta import read_tflite_metadata  # noqa: E402
from yolactedge.runtime import Detector  # noqa: E402

MEMORY = ["key_p4", "key_p5", "key_flow_features"]
LOW_THRESHOLD = 0.05  # the tiny video model's 40 classes score ~0.1: keep enough detections to compare


@pytest.fixture(scope="module")
def frame_folder(tmp_path_factory):
    """24 consecutive frames of a synthetic video as PNG files (sorted names = frame order)."""
    from yolactedge.data.synthetic_video import render_frames

    folder = tmp_path_factory.mktemp("frames")
    for index, (image, *_) in enumerate(render_frames(21, 0, 128, 24)):
        cv2.imwrite(str(folder / f"frame_{index:03d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(scope="module")
def int8_pair(tiny_video_model, frame_folder, tmp_path_factory):
    return export_model(tiny_video_model, "tflite", precision="int8", calib=frame_folder, calib_count=20,
                        output=tmp_path_factory.mktemp("int8") / "vid.tflite", progress=False)


@pytest.fixture(scope="module")
def fp32_pairs(tiny_video_model, tmp_path_factory):
    """{"tflite": key-frame file, "onnx": key-frame graph}: the same model exported both ways."""
    folder = tmp_path_factory.mktemp("fp32")
    tflite = export_model(tiny_video_model, "tflite", precision="fp32", output=folder / "vid.tflite", progress=False)
    onnx = export_model(tiny_video_model, "onnx", output=folder / "vid.onnx", progress=False)
    return {"tflite": tflite.path, "onnx": onnx.path}


def signature_io(path):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()
    return runner.get_input_details(), runner.get_output_details()


@pytest.mark.slow
def test_int8_pair_interface_order_and_metadata(int8_pair):
    from yolactedge.export.tflite_file import output_order

    key, warped = int8_pair.path, int8_pair.warped_path
    assert warped == key.with_name("vid_warp.tflite") and warped.is_file()
    # By index the key-frame file is an image model's file (NXP's order), then the memory.
    assert output_order(key.read_bytes()) == ["boxes", "scores", "proto", "masks", *MEMORY]
    assert output_order(warped.read_bytes()) == ["boxes", "scores", "proto", "masks"]
    key_in, key_out = signature_io(key)
    warped_in, warped_out = signature_io(warped)
    assert list(key_in) == ["input"] and key_in["input"]["dtype"] == np.int8
    assert key_in["input"]["quantization"] == (1.0, -128)
    assert set(warped_in) == {"input", *MEMORY} and all(d["dtype"] == np.int8 for d in warped_in.values())
    assert all(d["dtype"] == np.float32 for d in (*key_out.values(), *warped_out.values()))
    for name in MEMORY:  # handed over untouched: the key frame outputs each in the warped file's layout
        assert list(key_out[name]["shape"]) == list(warped_in[name]["shape"])
    key_meta, warped_meta = read_tflite_metadata(key), read_tflite_metadata(warped)
    assert (key_meta["video_graph"], warped_meta["video_graph"]) == ("key", "warped")
    assert key_meta["video_pair"] == warped_meta["video_pair"] and key_meta["precision"] == "int8"
    assert int8_pair.warped_op_histogram.get("GATHER", 0) > 0  # onnx2tf's GridSample
    assert "vid_warp.tflite" in int8_pair.summary() and "warped frames" in int8_pair.summary()


@pytest.mark.slow
def test_int8_warped_file_keeps_its_sampling_grid_in_float(int8_pair, fp32_pairs):
    """int8 cannot hold the flat gather indices of a feature map wider than about 11 cells (P4 at 320: up to ~480 in
    256 steps, so GATHER fetched neighbouring cells): everything on a GATHER's index path is float or int32 back to
    the flow's DEQUANTIZE, while the gathered features stay int8. `sampling_grid_nodes` names only position
    arithmetic (no convolution), and nothing in a graph without GATHER."""
    from ai_edge_litert import schema_py_generated as schema

    from yolactedge.export.sampling_grid import GATHERS, POSITION_OPS, sampling_grid_nodes
    from yolactedge.export.tflite_file import model_object
    from yolactedge.opprofile import op_type_name

    model = model_object(int8_pair.warped_path.read_bytes())
    subgraph = model.subgraphs[0]
    producer = {int(t): op for op in subgraph.operators for t in op.outputs}
    gathers = [op for op in subgraph.operators if op_type_name(model, op) in GATHERS]
    assert len(gathers) == 8  # 4 corners x 2 levels (P4, P5)
    for gather in gathers:
        assert subgraph.tensors[gather.inputs[0]].type == schema.TensorType.INT8
        pending, walked = [int(gather.inputs[1])], 0
        while pending:
            op = producer.get(pending.pop())
            if op is None or op_type_name(model, op) == "DEQUANTIZE":
                continue
            assert subgraph.tensors[op.outputs[0]].type in (schema.TensorType.FLOAT32, schema.TensorType.INT32), \
                op_type_name(model, op)
            walked += 1
            pending.extend(int(t) for t in op.inputs if t >= 0)
        assert walked >= 5

    fp32_warped = fp32_pairs["tflite"].with_name("vid_warp.tflite").read_bytes()
    names = set(sampling_grid_nodes(fp32_warped))
    float_model = model_object(fp32_warped)
    kept = {op_type_name(float_model, op) for op in float_model.subgraphs[0].operators
            if float_model.subgraphs[0].tensors[op.outputs[0]].name.decode() in names}
    assert {"FLOOR", "CAST", "MUL", "ADD"} <= kept <= POSITION_OPS
    assert sampling_grid_nodes(fp32_pairs["tflite"].read_bytes()) == []  # the key-frame graph gathers nothing


@pytest.mark.slow
def test_int8_pair_is_calibrated_on_the_folders_frames_and_verified_on_the_next(int8_pair, frame_folder):
    calibration = int8_pair.calibration
    assert calibration["source"] == str(frame_folder) and calibration["used"] == 20
    streams = calibration["equalised_streams"]  # on the calibration frames, as an image model's export does
    assert streams["applicable"] and sorted(streams["disparity"]) == [1, 2, 3, 4, 5, 6]
    assert streams["stages"] == [s for s, r in streams["disparity"].items() if r >= streams["threshold"]]
    assert "  streams " in int8_pair.summary()
    sidecar = json.loads(int8_pair.path.with_suffix(".json").read_text())["equalised_streams"]
    assert sidecar["stages"] == streams["stages"]
    report = json.loads(int8_pair.verify_json.read_text())
    assert report["passed"] and report["warped"]["passed"] and report["warped"]["frame"] == "warped"
    assert report["images"].startswith(f"4 consecutive held-out frames from {frame_folder}")
    assert report["warped"]["num_images"] == 3  # frames 2-4 warped from frame 1
    for graph in (report, report["warped"]):
        assert graph["detections"]["reference"] > 0 and graph["detections"]["recall"] >= 0.75
        assert 0 < graph["outputs"]["scores"]["max_abs"] < 0.1


@pytest.mark.slow
def test_litert_runs_the_fp32_pair_as_onnxruntime_runs_the_onnx_pair(fp32_pairs, video_frames):
    ours = Detector(fp32_pairs["tflite"], keyframe_interval=3, score_threshold=LOW_THRESHOLD)
    reference = Detector(fp32_pairs["onnx"], keyframe_interval=3, score_threshold=LOW_THRESHOLD)
    kinds = []
    for frame in video_frames:
        got, want = ours.raw(frame), reference.raw(frame)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(b).max())
    predictions = list(ours.stream(video_frames))
    kinds = [p.frame for p in predictions]
    assert kinds == ["key", "warped", "warped"] * 2 + ["key", "warped"]
    assert sum(len(p) for p in predictions if p.frame == "warped") > 0
    # In image mode the key-frame file is an image model.
    image = Detector(fp32_pairs["tflite"]).raw(video_frames[1])
    np.testing.assert_allclose(image.scores, Detector(fp32_pairs["onnx"]).raw(video_frames[1]).scores, atol=1e-5)


@pytest.mark.slow
def test_a_failed_verification_writes_neither_file(tiny_video_model, tmp_path, monkeypatch):
    from yolactedge.export import verify

    monkeypatch.setitem(verify.THRESHOLDS, "int8", verify.Thresholds(matched=0, box_iou=0, mask_iou=0,
                                                                     box_error=-1.0))
    with pytest.raises(verify.VerificationError, match="box error"):
        export_model(tiny_video_model, "tflite", precision="int8", calib_count=20, verify_count=3,
                     output=tmp_path / "vid.tflite", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
def test_fp16_pair_of_the_demo_video_model_is_verified_and_runs_in_video_mode(tmp_path):
    """float16 weights, float32 inputs and outputs, both files verified against the float ONNX pair (the trained
    demo-video: the tiny random models' near-tie detections do not survive fp16); LiteRT runs the pair in video
    mode and agrees with PyTorch on the same schedule."""
    from yolactedge.agreement import agreement
    from yolactedge.data.synthetic_video import render_frames

    result = export_model("demo-video", "tflite", precision="fp16", output=tmp_path / "vid.tflite", progress=False)
    assert result.verification["passed"] and result.verification["warped"]["passed"]
    for path in (result.path, result.warped_path):
        inputs, outputs = signature_io(path)
        assert all(d["dtype"] == np.float32 for d in (*inputs.values(), *outputs.values()))
        assert read_tflite_metadata(path)["precision"] == "fp16"
    assert result.path.stat().st_size < 4.5e6  # float16 weights: about half of the fp32 key file's 7.6 MB
    half, full = (Detector(model, keyframe_interval=4) for model in (result.path, "demo-video"))
    for frame, *_ in render_frames(20261130, 1, 320, 6):
        a, b = half(frame), full(frame)
        assert a.frame == b.frame
        total = agreement(b.detections, a.detections)
        assert total.reference > 0 and total.matched == total.reference and total.mean_box_iou > 0.98


@pytest.mark.slow
def test_cpu_target_pair_decodes_its_boxes_in_float(tiny_video_model, frame_folder, tmp_path):
    """--target cpu on a video pair: both files compute the boxes output in float (no 1/255 grid), the warped
    file keeps its sampling grid in float beside it, and both pass verification."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from yolactedge.export.tflite_file import signature_outputs

    result = export_model(tiny_video_model, "tflite", precision="int8", calib=frame_folder, calib_count=20,
                          target="cpu", output=tmp_path / "vid.tflite", progress=False)
    assert result.verification["passed"] and result.verification["warped"]["passed"]
    for path in (result.path, result.warped_path):
        interpreter = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        boxes = signature_outputs(path.read_bytes())["boxes"]
        (producer,) = [op["op_name"] for op in interpreter._get_ops_details() if boxes in op["outputs"]]
        assert producer != "DEQUANTIZE", path.name
    assert result.stray_ops == []
    assert "FLOOR" in " ".join(result.warped_float_ops)  # the sampling grid, reported as before


def test_int16x8_and_too_few_calibration_frames_are_refused(tiny_video_model, frame_folder, tmp_path):
    with pytest.raises(ExportError, match="a video model exports as fp32, fp16, int8; --precision int16x8 is"):
        export_model(tiny_video_model, "tflite", precision="int16x8", output=tmp_path / "v.tflite", progress=False)
    with pytest.raises(ExportError, match="at least 20 consecutive frames .*--calib-count is 10"):
        export_model(tiny_video_model, "tflite", calib_count=10, output=tmp_path / "v.tflite", progress=False)
    few = tmp_path / "few"
    few.mkdir()
    for path in sorted(frame_folder.iterdir())[:12]:
        (few / path.name).write_bytes(path.read_bytes())
    with pytest.raises(ExportError, match="only 12 usable calibration frame"):
        export_model(tiny_video_model, "tflite", calib=few, output=tmp_path / "v.tflite", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["few"]


@pytest.mark.slow
def test_predict_and_bench_run_the_tflite_pair(capsys, fp32_pairs, tmp_path):
    from yolactedge.cli import main

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (64, 48))
    for i in range(6):
        image = np.full((48, 64, 3), 30, np.uint8)
        writer.write(cv2.circle(image, (10 + 3 * i, 24), 9, (200, 180, 40), -1))
    writer.release()
    code = main(["predict", str(video), "--model", str(fp32_pairs["tflite"]), "--keyframe-interval", "3",
                 "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0 and "6 images" in out and (tmp_path / "out" / "clip.mp4").is_file()
    rows = tmp_path / "rows.json"
    assert main(["bench", "--model", str(fp32_pairs["tflite"]), "--runs", "2", "--json-out", str(rows)]) == 0
    data = json.loads(rows.read_text())
    data = data["rows"] if isinstance(data, dict) else data
    assert [(r["backend"], r["frame"]) for r in data] == [("litert", "key"), ("litert", "warped")]
    assert all(r["median_ms"]["inference"] > 0 for r in data)


@pytest.mark.slow
def test_verify_only_checks_the_warped_partner_too(fp32_pairs, tmp_path, capsys):
    """`export KEY.tflite --verify-only` verifies both files of the pair: a warped-frame file whose largest weight
    tensor was negated (the key-frame file untouched) fails it: exit 1, one line, no report written."""
    from yolactedge.cli import main
    from yolactedge.export.tflite_file import model_bytes, model_object

    key = fp32_pairs["tflite"]
    assert main(["export", str(key), "--verify-only", "--reference", str(fp32_pairs["onnx"])]) == 0
    report = json.loads(key.with_suffix(".verify.json").read_text())
    assert report["passed"] and report["warped"]["passed"] and report["warped"]["frame"] == "warped"
    assert report["warped"]["num_images"] == report["num_images"] - 1 >= 2

    model = model_object(key.with_name("vid_warp.tflite").read_bytes())
    weights = max((b for b in model.buffers if b.data is not None), key=lambda b: len(b.data))
    weights.data = (-np.asarray(weights.data, np.uint8).view(np.float32)).view(np.uint8)
    (tmp_path / "vid.tflite").write_bytes(key.read_bytes())
    (tmp_path / "vid_warp.tflite").write_bytes(model_bytes(model))
    capsys.readouterr()
    assert main(["export", str(tmp_path / "vid.tflite"), "--verify-only", "--reference",
                 str(fp32_pairs["onnx"])]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: verification failed for vid_warp.tflite")
    assert not (tmp_path / "vid.verify.json").exists()

    assert main(["export", str(tmp_path / "vid_warp.tflite"), "--verify-only", "--reference",
                 str(fp32_pairs["onnx"])]) == 1
    assert "key-frame file" in capsys.readouterr().err
