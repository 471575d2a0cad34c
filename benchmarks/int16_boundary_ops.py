"""Can an int8 graph hand a tensor to int16 inside itself? The question behind an int16 boxes output.

The int8 boxes output's 1/255 grid caps the demo model's box AP near 99.2% of float (docs/int8-accuracy.md); an
int16 tail (the decode's last ADD, the levels' CONCATENATION and the output's DEQUANTIZE in int16) would remove
the cap on the NPUs too, if one operator could turn an int8 tensor into an int16 one on both runtimes that run
our files: LiteRT on the CPU (and in the export's verification) and the Ethos-U65 through Vela. This builds a
one-operator TFLite file for each candidate (int8 input(s), int16 output, zero point 0 as int16 requires) and
reports whether LiteRT prepares it, whether its values are right (to 1 int16 step), and where Vela places it.
Then a whole int16 tail of a three-level decode: where Vela places it, and, since LiteRT cannot run its QUANTIZE,
how close a LiteRT twin (each int8 → int16 hand-over a DEQUANTIZE + QUANTIZE pair) comes to the exact sums.

    python benchmarks/int16_boundary_ops.py

Writes benchmarks/results/int16_boundary_ops.json.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from results_file import write_results  # noqa: E402

X = np.array([[-100, -40, -1, 0, 7, 60, 100, 127]], np.int8)  # the int8 input's values
IN_SCALE, IN_ZERO = 0.004, -10  # an int8 activation's usual asymmetric grid
Z = np.array([[90, -128, 33, -5, 0, 12, -70, 64]], np.int8)  # a binary operator's second input, on its own grid
Z_SCALE, Z_ZERO = 0.0025, 6
OUT_SCALE = 1 / 32767  # the fine int16 grid the boxes output would take


def graph_model(schema, tensors: list[tuple], operators: list[tuple], graph_inputs: list[int],
                constants: dict[int, np.ndarray] | None = None) -> bytes:
    """A TFLite flatbuffer: `tensors` are (name, type, shape, scales, zero points) (scales None: a float tensor),
    `operators` (builtin code, input indices, output indices, options or None) in order; the last tensor is the
    output."""
    import flatbuffers

    constants = constants or {}
    model = schema.ModelT()
    model.version = 3
    codes = list(dict.fromkeys(op for op, *_ in operators))
    model.operatorCodes = []
    for op in codes:
        code = schema.OperatorCodeT()
        code.builtinCode, code.deprecatedBuiltinCode, code.version = op, min(op, 127), 1
        model.operatorCodes.append(code)
    model.buffers = [schema.BufferT()]
    subgraph = schema.SubGraphT()
    subgraph.tensors = []
    for index, (name, dtype, shape, scales, zero_points) in enumerate(tensors):
        buffer = schema.BufferT()
        if index in constants:
            buffer.data = np.frombuffer(constants[index].tobytes(), np.uint8)
        model.buffers.append(buffer)
        tensor = schema.TensorT()
        tensor.name, tensor.type, tensor.shape, tensor.buffer = name, dtype, list(shape), len(model.buffers) - 1
        if scales is not None:
            quantization = schema.QuantizationParametersT()
            quantization.scale, quantization.zeroPoint = list(scales), list(zero_points)
            tensor.quantization = quantization
        subgraph.tensors.append(tensor)
    subgraph.inputs, subgraph.outputs = graph_inputs, [len(tensors) - 1]
    subgraph.operators = []
    for op, inputs, outputs, options in operators:
        operator = schema.OperatorT()
        operator.opcodeIndex, operator.inputs, operator.outputs = codes.index(op), inputs, outputs
        if options is not None:
            operator.builtinOptionsType, operator.builtinOptions = options
        subgraph.operators.append(operator)
    model.subgraphs = [subgraph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def single_op_model(schema, op: int, tensors: list[tuple], op_inputs: list[int], graph_inputs: list[int],
                    options=None, constants: dict[int, np.ndarray] | None = None) -> bytes:
    """One operator from `op_inputs` to the last tensor."""
    return graph_model(schema, tensors, [(op, op_inputs, [len(tensors) - 1], options)], graph_inputs, constants)


LEVELS = (4800, 1200, 300)  # anchors per level of a small box decode


def int16_tail_model(schema, twin: bool) -> bytes:
    """The end of a box decode with an int16 tail: per level, an int8 offset on [0, 1] and an int8 half size on
    its level's finer grid, each handed to int16 (QUANTIZE, or for LiteRT's `twin` a DEQUANTIZE + QUANTIZE pair),
    added in int16, the levels concatenated in int16 and dequantized to the float output."""
    types, ops = schema.TensorType, schema.BuiltinOperator
    tensors: list[tuple] = []
    operators: list[tuple] = []

    def tensor(name, dtype, count, scale=None, zero=0):
        tensors.append((name, dtype, (1, count, 4), None if scale is None else [scale], [zero]))
        return len(tensors) - 1

    inputs, sums = [], []
    for level, count in enumerate(LEVELS):
        pair = [tensor(f"offset{level}", types.INT8, count, 1 / 255, -128),
                tensor(f"half{level}", types.INT8, count, 0.0005 * (level + 1), 0)]
        inputs += pair
        wide = []
        for source in pair:
            if twin:
                real = tensor(f"real{source}", types.FLOAT32, count)
                operators.append((ops.DEQUANTIZE, [source], [real], None))
                source = real
            wide.append(tensor(f"wide{source}", types.INT16, count, OUT_SCALE))
            operators.append((ops.QUANTIZE, [source], [wide[-1]], None))
        sums.append(tensor(f"sum{level}", types.INT16, count, OUT_SCALE))
        operators.append((ops.ADD, wide, [sums[-1]], (schema.BuiltinOptions.AddOptions, schema.AddOptionsT())))
    concatenated = tensor("boxes16", types.INT16, sum(LEVELS), OUT_SCALE)
    concat = schema.ConcatenationOptionsT()
    concat.axis = 1
    operators.append((ops.CONCATENATION, sums, [concatenated],
                      (schema.BuiltinOptions.ConcatenationOptions, concat)))
    operators.append((ops.DEQUANTIZE, [concatenated], [tensor("boxes", types.FLOAT32, sum(LEVELS))], None))
    return graph_model(schema, tensors, operators, inputs)


def candidates(schema) -> dict[str, tuple[bytes, np.ndarray]]:
    """{name: (model bytes, the int16 values it should give)}."""
    ops, types = schema.BuiltinOperator, schema.TensorType
    shape = X.shape
    real = IN_SCALE * (X.astype(np.float64) - IN_ZERO)
    other = Z_SCALE * (Z.astype(np.float64) - Z_ZERO)
    int8_in = ("x", types.INT8, shape, [IN_SCALE], [IN_ZERO])
    int16_out = ("y", types.INT16, shape, [OUT_SCALE], [0])
    second = ("z", types.INT8, shape, [Z_SCALE], [Z_ZERO])

    def expected(values):
        return np.clip(np.round(values / OUT_SCALE), -32768, 32767)

    out = {
        "QUANTIZE (requantize int8 → int16)": (single_op_model(schema, ops.QUANTIZE, [int8_in, int16_out], [0], [0]),
                                                expected(real)),
        "CAST int8 → int16 (copies the integers)": (single_op_model(schema, ops.CAST, [int8_in, int16_out], [0], [0]),
                                                     expected(real)),
    }
    for name, op, option_type, option in (
            ("ADD", ops.ADD, schema.BuiltinOptions.AddOptions, schema.AddOptionsT()),
            ("SUB", ops.SUB, schema.BuiltinOptions.SubOptions, schema.SubOptionsT()),
            ("MUL", ops.MUL, schema.BuiltinOptions.MulOptions, schema.MulOptionsT())):
        value = {"ADD": real + other, "SUB": real - other, "MUL": real * other}[name]
        out[f"{name} int8, int8 → int16"] = (
            single_op_model(schema, op, [int8_in, second, int16_out], [0, 1], [0, 1], (option_type, option)),
            expected(value))
    width = shape[1]
    identity = (np.eye(width) * 127).astype(np.int8)
    weights = ("w", types.INT8, (width, width), [1 / 127], [0])
    bias = ("b", types.INT32, (width,), [IN_SCALE / 127], [0])
    out["FULLY_CONNECTED int8 → int16 (identity weights)"] = (
        single_op_model(schema, ops.FULLY_CONNECTED, [int8_in, weights, bias, int16_out], [0, 1, 2], [0],
                        (schema.BuiltinOptions.FullyConnectedOptions, schema.FullyConnectedOptionsT()),
                        {1: identity, 2: np.zeros(width, np.int32)}),
        expected(real))
    conv = schema.Conv2DOptionsT()
    conv.strideH = conv.strideW = 1
    conv.padding = schema.Padding.VALID
    out["CONV_2D int8 → int16 (1x1, identity weights)"] = (
        single_op_model(schema, ops.CONV_2D, [("x", types.INT8, (1, 1, 1, width), [IN_SCALE], [IN_ZERO]),
                                              ("w", types.INT8, (width, 1, 1, width), [1 / 127] * width, [0] * width),
                                              ("b", types.INT32, (width,), [IN_SCALE / 127] * width, [0] * width),
                                              ("y", types.INT16, (1, 1, 1, width), [OUT_SCALE], [0])],
                        [0, 1, 2], [0], (schema.BuiltinOptions.Conv2DOptions, conv),
                        {1: identity.reshape(width, 1, 1, width), 2: np.zeros(width, np.int32)}),
        expected(real))
    return out


def run_litert(data: bytes, want: np.ndarray) -> str:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        interpreter = Interpreter(model_content=data,
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interpreter.allocate_tensors()
        for detail, values in zip(interpreter.get_input_details(), (X, Z)):
            interpreter.set_tensor(detail["index"], values.reshape(detail["shape"]))
        interpreter.invoke()
    except (RuntimeError, ValueError) as exc:
        return "refused: " + str(exc).splitlines()[0][:90]
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).astype(np.int64).ravel()
    wrong = int(np.sum(np.abs(got - want.ravel()) > 1))
    return "right" if wrong == 0 else f"wrong on {wrong} of {got.size} values (got {got.tolist()})"


def run_litert_tail(data: bytes) -> str:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        Interpreter(model_content=data,
                    experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES).allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        return "refused: " + str(exc).splitlines()[0][:90]
    return "runs"


def tail_errors(data: bytes) -> str:
    """The int16 tail's float output against the exact sum of its int8 inputs' values, beside what an int8 output
    on [0, 1] (steps of 1/255) would err by on the same sums; random inputs."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=data,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    sums = []
    details = interpreter.get_input_details()
    for offset, half in zip(details[0::2], details[1::2]):
        values = []
        for detail in (offset, half):
            q = rng.integers(-128, 128, detail["shape"], dtype=np.int8)
            interpreter.set_tensor(detail["index"], q)
            scale, zero = detail["quantization"]
            values.append(scale * (q.astype(np.float64) - zero))
        sums.append(values[0] + values[1])
    interpreter.invoke()
    exact = np.clip(np.concatenate(sums, axis=1), -1, 1)
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    int8_grid = np.clip(np.round(exact * 255) / 255, 0, 1)
    inside = (exact >= 0) & (exact <= 1)
    return (f"max error {np.abs(got - exact).max():.2e} (an int8 output on [0, 1]: "
            f"{np.abs(int8_grid - exact)[inside].max():.2e})")


def run_vela_placement(data: bytes, workdir: Path, name: str) -> str:
    """"NPU", or the operator types Vela leaves on the CPU ("CPU: CAST")."""
    from yolactedge.export.common import ExportError
    from yolactedge.export.vela import npu_placement, run_vela, vela_available

    if not vela_available():
        return "Vela not installed"
    path = workdir / f"{name}.tflite"
    path.write_bytes(data)
    try:
        compiled = run_vela(path, workdir / f"vela_{name}")
    except ExportError as exc:
        return "Vela failed: " + str(exc)[:80]
    placement = npu_placement(Path(compiled["path"]).read_bytes())
    on_cpu = placement["cpu_operators"]
    return "NPU" if not on_cpu else "CPU: " + ", ".join(on_cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json-out", default=str(Path(__file__).parent / "results" / "int16_boundary_ops.json"))
    args = parser.parse_args(argv)
    from ai_edge_litert import schema_py_generated as schema

    lines = ["| operator (int8 in, int16 out) | LiteRT (no delegates) | Vela 5.2, Ethos-U65 |", "|---|---|---|"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, (name, (data, want)) in enumerate(candidates(schema).items()):
            row = {"operator": name, "litert": run_litert(data, want),
                   "vela": run_vela_placement(data, Path(tmp), f"op{index}")}
            rows.append(row)
            lines.append(f"| {name} | {row['litert']} | {row['vela']} |")
    tail = {"operators": "per level QUANTIZE int8 → int16 (x2), ADD int16; CONCATENATION int16; DEQUANTIZE",
            "levels": list(LEVELS)}
    with tempfile.TemporaryDirectory() as tmp:
        real = int16_tail_model(schema, twin=False)
        tail["litert"] = run_litert_tail(real)
        tail["vela"] = run_vela_placement(real, Path(tmp), "tail")
        tail["litert_twin"] = tail_errors(int16_tail_model(schema, twin=True))
    lines += ["", f"An int16 box-decode tail ({tail['operators']}; {len(LEVELS)} levels):",
              f"- Vela (what is not on the NPU): {tail['vela']}",
              f"- LiteRT: {tail['litert']}",
              f"- LiteRT, the same tail with each QUANTIZE int8 → int16 as DEQUANTIZE + QUANTIZE: {tail['litert_twin']}"]
    print("\n".join(lines))
    write_results(args.json_out, {"operators": rows, "int16_tail": tail})
    return 0


if __name__ == "__main__":
    sys.exit(main())
