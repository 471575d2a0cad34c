"""ONNX export of a video model: the key-frame and warped-frame graphs, their interface and their check."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from yolactedge.export import ExportError, export_model  # noqa: E402
from yolactedge.export.onnx import inspect_onnx, read_metadata  # noqa: E402

MEMORY = ["key_p4", "key_p5", "key_flow_features"]


@pytest.fixture(scope="module")
def exported(tiny_video_model, tmp_path_factory):
    return export_model(tiny_video_model, "onnx", output=tmp_path_factory.mktemp("video") / "vid.onnx",
                        progress=False)


def graph_io(path):
    import onnx

    graph = onnx.load(str(path)).graph
    return graph, [i.name for i in graph.input], [o.name for o in graph.output]


def test_two_graphs_with_the_memory_between_them(exported):
    assert exported.warped_path == exported.path.with_name("vid_warp.onnx") and exported.warped_path.is_file()
    _, key_inputs, key_outputs = graph_io(exported.path)
    warped, warped_inputs, warped_outputs = graph_io(exported.warped_path)
    assert key_inputs == ["input"] and key_outputs == ["boxes", "scores", "masks", "proto", *MEMORY]
    assert warped_inputs == ["input", *MEMORY] and warped_outputs == ["boxes", "scores", "masks", "proto"]
    assert "GridSample" in {node.op_type for node in warped.node}
    assert read_metadata(exported.path)["video_graph"] == "key"
    assert read_metadata(exported.warped_path)["video_graph"] == "warped"
    assert json.loads(read_metadata(exported.warped_path)["config"])["video"] is True
    assert inspect_onnx(exported.path)["opset"] == inspect_onnx(exported.warped_path)["opset"] == 17
    assert "vid_warp.onnx" in exported.summary() and "--keyframe-interval" in exported.summary()


def test_both_graphs_match_pytorch(exported):
    report = exported.onnx_check
    assert set(report) == {"key", "warped"}
    assert set(report["key"]["relative_error"]) == {"boxes", "scores", "masks", "proto", *MEMORY}
    for errors in report.values():
        assert 0 < errors["max_relative_error"] < 1e-4 and errors["max_absolute_error"] < 1e-3


def test_tflite_from_a_key_frame_graph_is_refused(exported):
    with pytest.raises(ExportError, match="key-frame graph of a video model; TFLite export starts from its checkpoint"):
        export_model(exported.path, "tflite", progress=False)


# --- the pair that carries prototypes (ours) ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def carried(tiny_video_model, tmp_path_factory):
    return export_model(tiny_video_model, "onnx", output=tmp_path_factory.mktemp("carried") / "vid.onnx",
                        progress=False, carry_protos=True)


def test_the_carried_warped_graph_takes_the_key_frames_prototypes(carried, exported):
    _, key_inputs, key_outputs = graph_io(carried.path)
    warped, warped_inputs, warped_outputs = graph_io(carried.warped_path)
    assert key_inputs == ["input"] and key_outputs == ["boxes", "scores", "masks", "proto", *MEMORY]
    assert warped_inputs == ["input", *MEMORY, "key_proto"] and warped_outputs == ["boxes", "scores", "masks", "proto"]
    proto_input = next(i for i in warped.input if i.name == "key_proto")
    key_graph, _, _ = graph_io(carried.path)
    proto_output = next(o for o in key_graph.output if o.name == "proto")
    assert proto_input.type == proto_output.type  # fed unchanged from the key frame's proto
    ops = [node.op_type for node in warped.node]
    plain_ops = [node.op_type for node in graph_io(exported.warped_path)[0].node]
    assert ops.count("GridSample") == 3 and ops.count("Conv") == plain_ops.count("Conv") - 5  # no protonet
    for path in (carried.path, carried.warped_path):
        assert json.loads(read_metadata(path)["config"])["carry_protos"] is True
    assert json.loads(read_metadata(exported.warped_path)["config"])["carry_protos"] is False
    assert inspect_onnx(carried.warped_path)["inputs"][0]["name"] == "input"


def test_the_carried_pair_matches_pytorch(carried):
    for errors in carried.onnx_check.values():
        assert 0 < errors["max_relative_error"] < 1e-4 and errors["max_absolute_error"] < 1e-3


def test_carrying_is_refused_where_it_cannot_apply(tiny_model, tiny_video_model, tmp_path):
    with pytest.raises(ExportError, match="needs a video model; .* is an image model"):
        export_model(tiny_model, "onnx", output=tmp_path / "image.onnx", progress=False, carry_protos=True)
    with pytest.raises(ExportError, match="--carry-protos applies to a video model's ONNX pair: use --format onnx"):
        export_model(tiny_video_model, "tflite", output=tmp_path / "vid.tflite", progress=False, carry_protos=True)
    assert not list(tmp_path.iterdir())
