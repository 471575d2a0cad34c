"""The per-operator profiler: every op cut out correctly, timed, and its XNNPACK placement reported."""
from __future__ import annotations

import numpy as np
import pytest

from yolactedge.cli import main
from yolactedge.opprofile import format_side_by_side, profile_ops, single_op_model

litert = pytest.importorskip("ai_edge_litert.interpreter")


def _op_names(path) -> list[str]:
    interpreter = litert.Interpreter(
        model_path=str(path), experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return [op["op_name"] for op in interpreter._get_ops_details()]


def test_profile_covers_every_op_in_order(tiny_tflite):
    profile = profile_ops(tiny_tflite["int8"], threads=1, runs=2, warmup=0, whole_runs=2)
    assert [op.op for op in profile.ops] == _op_names(tiny_tflite["int8"])
    assert all(op.median_us > 0 for op in profile.ops) and profile.whole_model_ms > 0
    assert sum(row["count"] for row in profile.by_type().values()) == len(profile.ops)
    convs = [op for op in profile.ops if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert convs and all(op.in_fast_kernels and op.dtypes == "int8→int8" for op in convs)
    outputs = [op for op in profile.ops if op.op == "DEQUANTIZE"]
    assert len(outputs) == 4 and all(op.dtypes == "int8→float32" for op in outputs)


def test_int8_ops_xnnpack_does_not_take_are_reported(tiny_tflite):
    """XNNPACK has no int8 softmax or exp: the profile must say these run outside it, and nothing else does."""
    int8 = profile_ops(tiny_tflite["int8"], threads=1, runs=1, warmup=0, whole_runs=1)
    assert {op.op for op in int8.outside_fast_kernels} == {"SOFTMAX", "EXP"}
    assert "RELU" not in {op.op for op in int8.ops}  # the protonet's no-op ReLU after upsampling is gone
    fp32 = profile_ops(tiny_tflite["fp32"], threads=1, runs=1, warmup=0, whole_runs=1)
    assert fp32.outside_fast_kernels == []


def test_single_op_model_computes_what_the_op_computes_in_the_graph(tiny_tflite):
    """Feed a cut-out op the tensors it sees inside the full model: it must produce the same output."""
    from ai_edge_litert import schema_py_generated as schema

    path = tiny_tflite["fp32"]
    full = litert.Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    full.allocate_tensors()
    (inp,) = full.get_input_details()
    full.set_tensor(inp["index"], np.random.default_rng(0).uniform(0, 255, inp["shape"]).astype(np.float32))
    full.invoke()
    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    ops = full._get_ops_details()
    checked = set()
    for index, op in enumerate(ops):
        if op["op_name"] in checked or op["op_name"] not in ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "RESIZE_BILINEAR",
                                                            "CONCATENATION", "SOFTMAX"):
            continue
        alone = litert.Interpreter(model_content=single_op_model(model, index))
        alone.allocate_tensors()
        variable = [d["name"] for d in alone.get_input_details()]
        by_name = {t["name"]: t["index"] for t in full.get_tensor_details()}
        for detail in alone.get_input_details():
            alone.set_tensor(detail["index"], full.get_tensor(by_name[detail["name"]]))
        alone.invoke()
        expected = full.get_tensor(op["outputs"][0])
        got = alone.get_tensor(alone.get_output_details()[0]["index"])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
        assert variable
        checked.add(op["op_name"])
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "CONCATENATION"} <= checked


def test_side_by_side_table(tiny_tflite):
    profiles = [profile_ops(tiny_tflite[p], threads=1, runs=1, warmup=0, whole_runs=1) for p in ("fp32", "int8")]
    table = format_side_by_side(profiles, ["fp32", "int8"])
    lines = table.splitlines()
    assert "fp32" in lines[0] and "int8" in lines[0]
    conv = next(line for line in lines if line.startswith("CONV_2D"))
    count = sum(op.op == "CONV_2D" for op in profiles[0].ops)
    assert conv.split()[1] == str(count) and conv.split()[4] == str(count)
    quantize_row = next(line for line in lines if line.startswith("QUANTIZE"))
    assert "-" in quantize_row.split()  # the fp32 file has no QUANTIZE: shown as absent, not as zero
    assert lines[-1].startswith("whole model")


def test_not_a_tflite_file(tmp_path):
    bogus = tmp_path / "model.tflite"
    bogus.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
        profile_ops(bogus)


def test_truncated_tflite_file(tiny_tflite, tmp_path):
    truncated = tmp_path / "cut.tflite"
    truncated.write_bytes(tiny_tflite["int8"].read_bytes()[:2000])
    with pytest.raises(ValueError, match="truncated or corrupt TFLite file"):
        profile_ops(truncated)


def test_cli_bench_ops(tiny_tflite, tmp_path, capsys):
    out = tmp_path / "ops.json"
    assert main(["bench", "--ops", "--model", str(tiny_tflite["int8"]), "--threads", "1", "--runs", "1",
                 "--warmup", "0", "--json-out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "CONV_2D" in printed and "outside XNNPACK" in printed
    assert out.is_file()


@pytest.mark.parametrize("model, threads, message", [
    ("int8", "1,2", "one thread count"),
    ("missing.tflite", "1", "no such model file"),
])
def test_cli_bench_ops_bad_input(tiny_tflite, capsys, model, threads, message):
    model = str(tiny_tflite.get(model, model))
    assert main(["bench", "--ops", "--model", model, "--threads", threads]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error") and message in err and len(err.strip().splitlines()) == 1


def test_cli_bench_ops_refuses_onnx(tiny_onnx, capsys):
    assert main(["bench", "--ops", "--model", str(tiny_onnx), "--threads", "1"]) == 2
    assert "not one" in capsys.readouterr().err
