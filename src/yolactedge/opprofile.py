"""Per-operator profile of a TFLite file: each operator's time and whether XNNPACK's fast kernels take it.

The LiteRT Python API has no op profiler (`benchmark_model --enable_op_profiling` is a C++ tool). So each operator
is cut out of the file into a model of its own (its constant inputs kept, its other inputs made model inputs),
which is then run alone with the default delegates: when XNNPACK claims it, the op runs in the fast kernels; when
it does not, it runs in LiteRT's reference/optimized builtin kernels and breaks the delegated partition around it.
Times are medians of repeated invocations of that one op; their sum is close to, not equal to, the whole model's
time (no fusion across ops, no partition boundaries, a few microseconds of call overhead per op).

Needs only ai-edge-litert (its flatbuffer schema) and NumPy, like the rest of the runtime path.
"""
from __future__ import annotations

import copy
import functools
import os
import statistics
import struct
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

TENSOR_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_,
                 7: np.int16, 9: np.int8, 10: np.float64}


@dataclass
class OpTiming:
    index: int
    op: str
    output_shape: list[int]
    dtypes: str           # "int8→float32": first non-constant input's type → first output's type
    in_fast_kernels: bool  # XNNPACK delegated it when run alone
    median_us: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ModelProfile:
    model: str
    threads: int
    ops: list[OpTiming]
    whole_model_ms: float  # median of the full file run with the default delegates

    @property
    def outside_fast_kernels(self) -> list[OpTiming]:
        return [op for op in self.ops if not op.in_fast_kernels]

    def by_type(self) -> dict[str, dict]:
        """{op type: {"count", "outside", "total_ms"}}, slowest type first."""
        table: dict[str, dict] = defaultdict(lambda: {"count": 0, "outside": 0, "total_ms": 0.0})
        for op in self.ops:
            row = table[op.op]
            row["count"] += 1
            row["outside"] += not op.in_fast_kernels
            row["total_ms"] += op.median_us / 1000
        return dict(sorted(table.items(), key=lambda kv: -kv[1]["total_ms"]))

    def to_dict(self) -> dict:
        return {"model": self.model, "threads": self.threads, "whole_model_ms": self.whole_model_ms,
                "sum_of_ops_ms": sum(op.median_us for op in self.ops) / 1000,
                "outside_fast_kernels": len(self.outside_fast_kernels),
                "by_type": self.by_type(), "ops": [op.to_dict() for op in self.ops]}


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError as exc:
        raise ImportError("a per-operator profile needs ai-edge-litert: pip install 'yolactedge[litert]'") from exc
    return schema


def _read_model(path: str | os.PathLike):
    schema = _schema()
    data = Path(path).read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError(f"{path}: not a TFLite flatbuffer")
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except (struct.error, IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: truncated or corrupt TFLite file ({exc})") from None
    if len(model.subgraphs or []) != 1:
        raise ValueError(f"{path}: {len(model.subgraphs or [])} subgraphs; only single-subgraph models are profiled")
    return model


def op_type_name(model, op) -> str:
    """The operator type of `op` in a ModelT: the builtin name, or the custom code (e.g. ethos-u)."""
    schema = _schema()
    code = model.operatorCodes[op.opcodeIndex]
    value = max(code.builtinCode, code.deprecatedBuiltinCode)
    if value == schema.BuiltinOperator.CUSTOM:
        return (code.customCode or b"CUSTOM").decode() if isinstance(code.customCode, bytes) else str(code.customCode)
    return _builtin_names().get(value, str(value))


@functools.cache
def _builtin_names() -> dict[int, str]:
    return {v: k for k, v in vars(_schema().BuiltinOperator).items() if not k.startswith("_")}


def is_constant(model, tensor) -> bool:
    """Whether a tensor's values are stored in the model (weights, biases, constants), not computed."""
    data = model.buffers[tensor.buffer].data if tensor.buffer < len(model.buffers) else None
    return data is not None and len(data) > 0


def single_op_model(model, op_index: int) -> bytes:
    """Operator `op_index` of subgraph 0 as a model of its own: constants kept, other inputs become inputs."""
    import flatbuffers

    schema = _schema()
    graph = model.subgraphs[0]
    op = graph.operators[op_index]
    new = schema.ModelT()
    new.version = model.version
    new.operatorCodes = model.operatorCodes
    new.buffers = [schema.BufferT()]
    new.subgraphs = [schema.SubGraphT()]
    sub = new.subgraphs[0]
    sub.tensors, sub.inputs, sub.outputs, sub.operators = [], [], [], []
    remap: dict[int, int] = {}

    def take(index: int) -> int:
        if index < 0:
            return index
        if index not in remap:
            tensor = copy.copy(graph.tensors[index])
            if is_constant(model, tensor):
                new.buffers.append(model.buffers[tensor.buffer])
                tensor.buffer = len(new.buffers) - 1
            else:
                tensor.buffer = 0
            remap[index] = len(sub.tensors)
            sub.tensors.append(tensor)
        return remap[index]

    clone = copy.copy(op)
    clone.inputs = [take(i) for i in (op.inputs if op.inputs is not None else [])]
    clone.outputs = [take(i) for i in op.outputs]
    clone.intermediates = [take(i) for i in op.intermediates] if op.intermediates is not None else None
    sub.operators = [clone]
    sub.inputs = [remap[i] for i in dict.fromkeys(op.inputs if op.inputs is not None else [])
                  if i >= 0 and not is_constant(model, graph.tensors[i])]
    sub.outputs = list(clone.outputs)
    builder = flatbuffers.Builder(1024)
    builder.Finish(new.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _random_input(detail: dict, rng: np.random.Generator) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    shape = tuple(int(v) for v in detail["shape"])
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype in (np.int8, np.uint8, np.int16):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return np.zeros(shape, dtype)


def _median_invoke_us(interpreter, runs: int, warmup: int) -> float:
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def _interpreter(content: bytes, threads: int):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=content, num_threads=threads,
                              experimental_op_resolver_type=OpResolverType.AUTO)
    interpreter.allocate_tensors()
    return interpreter


def _feed(interpreter, rng: np.random.Generator) -> None:
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], _random_input(detail, rng))


def _op_timings(path: str | os.PathLike, threads: int, runs: int, warmup: int) -> list[OpTiming]:
    """Each operator of the file cut out, run alone with the default delegates, timed."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0 (got {runs}, {warmup})")
    model = _read_model(path)
    graph = model.subgraphs[0]
    rng = np.random.default_rng(0)
    timings = []
    for index, op in enumerate(graph.operators):
        interpreter = _interpreter(single_op_model(model, index), threads)
        _feed(interpreter, rng)
        delegated = any(d["op_name"] == "DELEGATE" for d in interpreter._get_ops_details())
        variable_inputs = [i for i in (op.inputs if op.inputs is not None else [])
                           if i >= 0 and not is_constant(model, graph.tensors[i])]
        first_in = TENSOR_DTYPES.get(graph.tensors[variable_inputs[0]].type) if variable_inputs else None
        first_out = TENSOR_DTYPES.get(graph.tensors[op.outputs[0]].type)
        dtypes = f"{np.dtype(first_in).name if first_in else '-'}→{np.dtype(first_out).name if first_out else '?'}"
        timings.append(OpTiming(
            index=index, op=op_type_name(model, op), output_shape=[int(v) for v in graph.tensors[op.outputs[0]].shape],
            dtypes=dtypes, in_fast_kernels=delegated, median_us=_median_invoke_us(interpreter, runs, warmup)))
    return timings


def profile_ops(path: str | os.PathLike, *, threads: int = 2, runs: int = 20, warmup: int = 3,
                whole_runs: int = 10) -> ModelProfile:
    """Time every operator of a TFLite file alone, and the whole file, with LiteRT's default delegates."""
    if whole_runs < 1:
        raise ValueError(f"whole_runs must be >= 1, got {whole_runs}")
    ops = _op_timings(path, threads, runs, warmup)
    (whole_ms,) = interleaved_latency_ms([path], threads=threads, runs=whole_runs, warmup=min(warmup, 2))
    return ModelProfile(model=str(path), threads=threads, ops=ops, whole_model_ms=whole_ms)


def interleaved_latency_ms(paths: list[str | os.PathLike], *, threads: int = 2, runs: int = 20,
                           warmup: int = 3) -> list[float]:
    """Median whole-model time of each file, runs taken in turn (A, B, A, B, ...) so that load from other
    processes falls on all files alike; compare files with this, not with separate runs."""
    rng = np.random.default_rng(0)
    interpreters = [_interpreter(Path(p).read_bytes(), threads) for p in paths]
    for interpreter in interpreters:
        _feed(interpreter, rng)
        for _ in range(warmup):
            interpreter.invoke()
    times: list[list[float]] = [[] for _ in interpreters]
    for _ in range(runs):
        for interpreter, samples in zip(interpreters, times):
            start = time.perf_counter()
            interpreter.invoke()
            samples.append(time.perf_counter() - start)
    return [statistics.median(samples) * 1000 for samples in times]


def profile_side_by_side(paths: list[str | os.PathLike], *, threads: int = 2, runs: int = 20,
                         warmup: int = 3) -> list[ModelProfile]:
    """profile_ops for each file, with whole-model times from interleaved runs."""
    ops = [_op_timings(p, threads, runs, warmup) for p in paths]
    whole = interleaved_latency_ms(paths, threads=threads, runs=runs, warmup=warmup)
    return [ModelProfile(model=str(p), threads=threads, ops=o, whole_model_ms=ms) for p, o, ms in zip(paths, ops, whole)]


def format_side_by_side(profiles: list[ModelProfile], labels: list[str] | None = None) -> str:
    """One row per op type: count / outside XNNPACK / total ms for each profile; totals at the bottom."""
    labels = labels or [Path(p.model).name for p in profiles]
    tables = [p.by_type() for p in profiles]
    types = sorted({t for table in tables for t in table},
                   key=lambda t: -max(table.get(t, {}).get("total_ms", 0.0) for table in tables))
    width = max([len("op type"), *map(len, types)])
    cell = 26
    lines = [f"{'':{width}}  " + "  ".join(f"{label[:cell]:>{cell}}" for label in labels),
             f"{'op type':{width}}  " + "  ".join(f"{'count  outside  total ms':>{cell}}" for _ in labels)]
    for op_type in types:
        cells = []
        for table in tables:
            row = table.get(op_type)
            cells.append(f"{row['count']:>5}  {row['outside']:>7}  {row['total_ms']:>8.2f}" if row else "-")
        lines.append(f"{op_type:{width}}  " + "  ".join(f"{c:>{cell}}" for c in cells))
    totals = [f"{len(p.ops):>5}  {len(p.outside_fast_kernels):>7}  {sum(o.median_us for o in p.ops) / 1000:>8.2f}"
              for p in profiles]
    lines.append(f"{'all ops (sum)':{width}}  " + "  ".join(f"{c:>{cell}}" for c in totals))
    lines.append(f"{'whole model':{width}}  " + "  ".join(f"{f'{p.whole_model_ms:.2f} ms':>{cell}}" for p in profiles))
    return "\n".join(lines)


def format_outside(profile: ModelProfile, limit: int = 20) -> str:
    """The operators left outside XNNPACK, slowest first."""
    outside = sorted(profile.outside_fast_kernels, key=lambda op: -op.median_us)
    if not outside:
        return f"{Path(profile.model).name}: every operator runs in XNNPACK's kernels"
    lines = [f"{Path(profile.model).name}: {len(outside)} operator(s) outside XNNPACK's kernels"]
    for op in outside[:limit]:
        lines.append(f"  #{op.index:<4} {op.op:<20} {op.dtypes:<16} {op.output_shape!s:<20} {op.median_us / 1000:8.3f} ms")
    if len(outside) > limit:
        lines.append(f"  ... {len(outside) - limit} more")
    return "\n".join(lines)
