"""Export: PyTorch → ONNX → TensorFlow (onnx2tf) → TFLite (fp32, fp16, int8, int16x8), verified, offline.

`export_model` is the one entry point the CLI needs; the stages are usable on their own:

- `export.onnx`: `export_onnx` (atomic, simplified, metadata, checked against PyTorch), `inspect_onnx`.
- `export.calibration`: calibration images from a folder or synthetic renders.
- `export.tflite`: `onnx_to_keras` (onnx2tf, no network), `keras_to_tflite`, `inspect_tflite`, `run_vela`.
- `export.verify`: `verify_tflite` (per-output errors and detection agreement vs the float model).

Importing this package is cheap: torch, onnx and TensorFlow are imported only when a stage runs.
Every user error is an `ExportError` (a `ValueError`) with a one-line message; nothing is left half-written at
the output path.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMATS = ("onnx", "tflite")
PRECISIONS = ("fp32", "fp16", "int8", "int16x8")
TARGETS = ("imx8mp", "imx93")
# Output tensors of every TFLite file, by index: the order NXP's YOLACT-Edge example reads them in.
TFLITE_OUTPUT_ORDER = ("boxes", "scores", "proto", "masks")
ONNX_OUTPUT_ORDER = ("boxes", "scores", "masks", "proto")


class ExportError(ValueError):
    """The export cannot go on; the message says why in one line (the CLI prints it and exits 1)."""


@dataclass
class ExportResult:
    """What an export produced. `path` is the file to deploy; everything else describes it."""

    format: str
    precision: str
    path: Path
    input_size: int
    target: str | None = None
    size_bytes: int = 0
    inputs: list[dict] = field(default_factory=list)  # name, shape, dtype, quantization (scale, zero_point)
    outputs: list[dict] = field(default_factory=list)  # in index order
    output_order: list[str] = field(default_factory=list)
    op_histogram: dict[str, int] = field(default_factory=dict)
    stray_ops: list[str] = field(default_factory=list)
    stage_times: dict[str, float] = field(default_factory=dict)
    calibration: dict | None = None
    onnx_check: dict | None = None
    verification: dict | None = None
    verify_json: Path | None = None
    vela: dict | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        return json.loads(json.dumps(data, default=str))

    def summary(self) -> str:
        lines = [f"{self.format} {self.precision} {self.path} ({self.size_bytes / 1e6:.2f} MB)"]
        if self.inputs:
            i = self.inputs[0]
            quant = f" scale {i['quantization'][0]:g} zero-point {i['quantization'][1]}" if i.get("quantization") else ""
            lines.append(f"  input  {i['name']} {i['dtype']} {i['shape']}{quant}")
        for o in self.outputs:
            lines.append(f"  output {o['name']} {o['dtype']} {o['shape']}")
        if self.op_histogram:
            ops = ", ".join(f"{k} {v}" for k, v in sorted(self.op_histogram.items(), key=lambda kv: (-kv[1], kv[0])))
            lines.append(f"  ops    {ops}")
        if self.stray_ops:
            lines.append(f"  stray  {'; '.join(self.stray_ops)}")
        if self.stage_times:
            lines.append("  time   " + ", ".join(f"{k} {v:.1f}s" for k, v in self.stage_times.items()))
        return "\n".join(lines)


_LAZY = {
    "export_onnx": "yolactedge.export.onnx",
    "inspect_onnx": "yolactedge.export.onnx",
    "resolve_model": "yolactedge.export.onnx",
    "find_images": "yolactedge.export.calibration",
    "load_calibration_images": "yolactedge.export.calibration",
    "synthetic_images": "yolactedge.export.calibration",
    "onnx_to_keras": "yolactedge.export.tflite",
    "keras_to_tflite": "yolactedge.export.tflite",
    "export_tflite": "yolactedge.export.tflite",
    "inspect_tflite": "yolactedge.export.tflite",
    "run_vela": "yolactedge.export.tflite",
    "vela_available": "yolactedge.export.tflite",
    "verify_tflite": "yolactedge.export.verify",
}

__all__ = [
    "ExportError", "ExportResult", "FORMATS", "PRECISIONS", "TARGETS", "TFLITE_OUTPUT_ORDER", "export_model", *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'yolactedge.export' has no attribute {name!r}")


# --- the entry point -------------------------------------------------------------------------------------------

class Stages:
    """Prints "[k/n] what ... 1.2 s" lines (when verbose) and records each stage's wall time."""

    def __init__(self, total: int, verbose: bool) -> None:
        self.total, self.verbose, self.done, self.times = total, verbose, 0, {}

    def run(self, name: str, fn, *args, **kwargs):
        self.done += 1
        if self.verbose:
            print(f"[{self.done}/{self.total}] {name} ...", flush=True)
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.times[name] = round(time.perf_counter() - start, 3)
            if self.verbose:
                print(f"[{self.done}/{self.total}] {name}: {self.times[name]:.1f} s", flush=True)


def check_request(format: str, precision: str | None, target: str | None) -> str:
    """Validate the format/precision/target combination up front; → the effective precision."""
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    if precision is not None and precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if target is not None and target not in TARGETS:
        raise ExportError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    if format == "onnx":
        if precision not in (None, "fp32"):
            raise ExportError(f"ONNX export is float32 only; --precision {precision} applies to --format tflite")
        if target is not None:
            raise ExportError(f"--target {target} needs --format tflite --precision int8")
        return "fp32"
    precision = precision or "int8"
    if target is not None and precision != "int8":
        raise ExportError(f"--target {target} runs full-integer models only: use --precision int8, not {precision}")
    return precision


def default_output(source: Any, config_name: str, format: str, precision: str, target: str | None) -> Path:
    """Beside the checkpoint/ONNX file when there is one, else in the current directory."""
    if isinstance(source, (str, os.PathLike)) and str(source) != "demo":
        base = Path(source).with_suffix("")
    else:
        base = Path.cwd() / config_name
    if format == "onnx":
        return base.with_name(base.name + ".onnx")
    suffix = f"_{precision}" + ("_vela" if target == "imx93" else "")
    return base.with_name(base.name + suffix + ".tflite")


def check_output_path(output: str | os.PathLike, default_name: str) -> Path:
    """The final file path, after proving that its folder can take a new file (nothing is left behind)."""
    path = Path(output).expanduser()
    if path.is_dir():
        path = path / default_name
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None
    if path.exists() and not path.is_file():
        raise ExportError(f"cannot write {path}: it exists and is not a file")
    return path


def atomic_replace(src: Path, dst: Path) -> None:
    """Move a finished file into place in one step (same filesystem: rename; else copy to a temp then rename)."""
    try:
        os.replace(src, dst)
    except OSError:
        fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def export_model(
    model: Any,
    format: str = "tflite",
    *,
    precision: str | None = None,
    calib: str | os.PathLike | None = None,
    calib_count: int = 100,
    calib_seed: int = 1337,
    imgsz: int | None = None,
    output: str | os.PathLike | None = None,
    target: str | None = None,
    verify: bool = True,
    progress: bool = True,
    verify_count: int | None = None,
) -> ExportResult:
    """Export a YOLACT-Edge model to ONNX or TFLite.

    model: a `YolactEdge` module, a checkpoint path, "demo", or (format "tflite") a YOLACT-Edge .onnx file.
    precision: TFLite only: "fp32", "fp16", "int8" (default; full integer, int8 input, float32 outputs) or
        "int16x8" (int16 activations, int8 weights, float32 input and outputs). ONNX is always fp32.
    calib: folder of calibration images (searched recursively); None renders synthetic images (with a warning).
    target: "imx8mp" (the plain int8 file) or "imx93" (int8 compiled by Vela for the Ethos-U65).
    verify: compare the TFLite model with the float ONNX model on `verify_count` held-out images (default 4;
        2 for int16x8, whose kernels have no fast CPU path) and write `<output stem>.verify.json` beside it.
    """
    precision = check_request(format, precision, target)
    if calib_count < 1:
        raise ExportError(f"--calib-count must be at least 1, got {calib_count}")
    if target == "imx93":
        from .tflite import vela_available

        if not vela_available():
            raise ExportError("--target imx93 needs the Vela compiler: pip install ethos-u-vela")

    from .onnx import resolve_model

    stages = Stages(total=_stage_count(format, precision, target, verify, model), verbose=progress)
    source = stages.run("load model", resolve_model, model, imgsz)
    default = default_output(model, source.config.name, format, precision, target)
    path = check_output_path(output, default.name) if output is not None else check_output_path(default, default.name)

    if format == "onnx":
        from .onnx import export_onnx

        if source.module is None:
            raise ExportError(f"{model} is already an ONNX model; give the checkpoint to re-export it")
        info = stages.run("export ONNX", export_onnx, source.module, path, progress=progress)
        return ExportResult(
            format="onnx", precision="fp32", path=path, input_size=source.input_size, size_bytes=path.stat().st_size,
            inputs=info["inputs"], outputs=info["outputs"], output_order=[o["name"] for o in info["outputs"]],
            stage_times=stages.times, onnx_check=info["check"],
        )

    from .tflite import export_tflite

    if calib is not None and precision not in ("int8", "int16x8"):
        _warn(f"--calib is only used by int8 and int16x8; ignored for {precision}")
    return export_tflite(
        source, path, precision=precision, calib=calib, calib_count=calib_count, calib_seed=calib_seed,
        target=target, verify=verify, verify_count=verify_count, progress=progress, stages=stages,
    )


def _stage_count(format: str, precision: str, target: str | None, verify: bool, model: Any) -> int:
    if format == "onnx":
        return 2
    is_onnx = isinstance(model, (str, os.PathLike)) and str(model).lower().endswith(".onnx")
    count = 1 + (0 if is_onnx else 1) + 2  # load, ONNX export, onnx2tf, TFLite convert
    count += precision in ("int8", "int16x8")  # calibration images
    count += bool(verify) + (target == "imx93")
    return count


def _warn(message: str, result_warnings: list[str] | None = None, stacklevel: int = 3) -> None:
    warnings.warn(message, stacklevel=stacklevel)
    if result_warnings is not None:
        result_warnings.append(message)
