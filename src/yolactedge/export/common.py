"""What every export stage shares: the formats, the output order contract, the result and the error type.

Nothing here imports torch, onnx or TensorFlow, nor any other export stage (only `yolactedge.fileio`): every
stage imports this.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..fileio import atomic_write_json, give_default_permissions

FORMATS = ("onnx", "tflite")
PRECISIONS = ("fp32", "fp16", "int8", "int16x8")
NPU_TARGETS = ("imx8mp", "imx93")  # int8 graphs only


@dataclass(frozen=True)
class TargetGraph:
    """How a target's int8 graph differs from the plain one; every form keeps the float model's values."""

    # Kept in float: LiteRT runs int8 SOFTMAX and EXP on slow reference kernels (XNNPACK has none); NPUs need int8.
    float_ops: tuple[str, ...] = ()
    # The box decode in float (`box_decode.box_decode_nodes`): boxes off the int8 output's 1/255 grid.
    float_box_decode: bool = False
    # The boxes output's tail in int16 (`int16_tail`): boxes off the int8 grid, on an NPU that runs int16.
    int16_box_tail: bool = False
    # The FPN's non-2x resizes as fixed-weight convolutions, which Vela places on the Ethos-U NPU.
    separable_upsampling: bool = False
    # The input's division by std folded into the first convolution: one int8 op over the whole image less.
    fold_input_std: bool = False
    # The first convolution's zero padding done by the convolution itself (SAME) instead of a PAD over the image,
    # which XNNPACK runs as a separate pass; NPUs fuse the PAD, so only the CPU graph needs it.
    implicit_image_padding: bool = False

    def kept_in_float(self) -> list[str]:
        """What this target's int8 graph computes in float, in words for summaries."""
        return [*self.float_ops, *(["the box decode"] if self.float_box_decode else [])]


# imx8mp keeps the plain graph (its NPU cannot be measured here); None (no --target) is the plain graph too.
TARGET_GRAPHS = {
    "cpu": TargetGraph(float_ops=("SOFTMAX", "EXP"), float_box_decode=True, fold_input_std=True,
                       implicit_image_padding=True),
    "imx8mp": TargetGraph(),
    "imx93": TargetGraph(int16_box_tail=True, separable_upsampling=True, fold_input_std=True),
}
TARGETS = tuple(TARGET_GRAPHS)
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
    warped_path: Path | None = None  # a video model's warped-frame graph (`path` is then its key-frame graph)
    warped_op_histogram: dict[str, int] = field(default_factory=dict)
    warped_float_ops: list[str] = field(default_factory=list)  # its sampling grid's arithmetic, kept float by design
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
        if self.warped_path is not None:
            lines.append(f"  video  key-frame graph above (plus memory outputs); warped-frame graph {self.warped_path}")
        if self.op_histogram:
            ops = ", ".join(f"{k} {v}" for k, v in sorted(self.op_histogram.items(), key=lambda kv: (-kv[1], kv[0])))
            lines.append(f"  ops    {ops}")
        if self.stray_ops:
            lines.append(f"  stray  {'; '.join(self.stray_ops)}")
        graph = TARGET_GRAPHS.get(self.target)
        if graph and self.precision == "int8" and graph.kept_in_float():
            lines.append(f"  float  {', '.join(graph.kept_in_float())} (--target {self.target}: faster or finer in "
                         "float on a CPU)")
        if graph and self.precision == "int8" and graph.int16_box_tail:
            lines.append("  int16  the boxes output's last ADD per level, CONCATENATION and DEQUANTIZE (--target "
                         f"{self.target}: boxes off the int8 output's 1/255 grid, on the NPU)")
        equalised = (self.calibration or {}).get("equalised_streams")
        if equalised:
            lines.append(f"  streams {_equalisation_line(equalised)}")
        if self.warped_op_histogram:
            ops = ", ".join(f"{k} {v}" for k, v in self.warped_op_histogram.items())
            lines.append(f"  warped ops {ops}")
        if self.warped_float_ops:
            lines.append(f"  warped float ops (the sampling grid's arithmetic): {'; '.join(self.warped_float_ops)}")
        if self.stage_times:
            lines.append("  time   " + ", ".join(f"{k} {v:.1f}s" for k, v in self.stage_times.items()))
        if self.vela:
            lines.extend(self._vela_lines())
        if self.verification is not None:
            det = self.verification["detections"]
            lines.append(f"  verify passed: {det['matched']}/{det['reference']} reference detections matched"
                         + (f", report {self.verify_json}" if self.verify_json else ""))
            if "warped" in self.verification:
                det = self.verification["warped"]["detections"]
                lines.append(f"  verify passed for the warped frames: {det['matched']}/{det['reference']} reference "
                             "detections matched")
        return "\n".join([*lines, *self.next_steps()])

    def _vela_lines(self) -> list[str]:
        """Where Vela put the work, from its own report."""
        summary = self.vela.get("summary", {})
        cpu_types = ", ".join(f"{k} {v}" for k, v in summary.get("CPU operator types", {}).items())
        lines = [f"  vela   {self.vela.get('accelerator', '')}: NPU operators {summary.get('NPU operators', '?')}, "
                 f"CPU operators {summary.get('CPU operators', '?')}" + (f" ({cpu_types})" if cpu_types else "")]
        placement = self.vela.get("placement")
        if placement:
            lines.append(f"         {placement['npu_partitions']} NPU partition(s), "
                         f"{placement['cpu_to_npu_handovers']} CPU→NPU handover(s) mid-inference")
        if "Estimated inference time" in summary:
            lines.append(f"         estimated {summary['Estimated inference time']}, SRAM "
                         f"{summary.get('Total SRAM used', '?')}, DRAM {summary.get('Total DRAM used', '?')}")
        if self.verification is not None:
            lines.append("         verified: the int8 model before Vela (Ethos-U operators do not run on a CPU)")
        return lines

    def next_steps(self) -> list[str]:
        """The commands that use the new file (a Vela file needs the i.MX 93's Ethos-U delegate to run)."""
        model = shlex.quote(str(self.path))
        where = " (on the i.MX 93, add --delegate /usr/lib/libethosu_delegate.so)" if self.target == "imx93" else ""
        if self.warped_path is not None:
            return ["next:", f"  yolactedge predict VIDEO --model {model} --keyframe-interval 5",
                    f"  yolactedge bench --model {model}"]
        return [f"next{where}:", f"  yolactedge predict IMAGE --model {model}",
                f"  yolactedge val --model {model} --images DIR --annotations ANN.json",
                f"  yolactedge bench --model {model}"]


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


def atomic_replace(src: Path, dst: Path) -> None:
    """Move a finished file into place in one step (same filesystem: rename; else copy to a temp then rename)."""
    try:
        os.replace(src, dst)
    except OSError:
        fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            give_default_permissions(tmp)
            os.replace(tmp, dst)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def write_json(path: Path, data: dict) -> None:
    """A JSON report or sidecar beside a model, written atomically."""
    atomic_write_json(path, data, indent=1, default=str)


def relative_error(ours, reference) -> float:
    """max |ours - reference| / max |reference| (floored at 1e-6), inf when not finite: how the export's
    float checks (ONNX, Keras, the video pair) compare outputs whose magnitudes differ."""
    error = float(np.abs(np.asarray(ours) - np.asarray(reference)).max()) / max(float(np.abs(reference).max()), 1e-6)
    return error if np.isfinite(error) else float("inf")


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type): what a one-line error can show."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def last_line(text: str) -> str:
    """The last non-empty line of a tool's output: usually the one that says what went wrong."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _equalisation_line(report: dict) -> str:
    """What `export.equalise` did to the backbone's residual streams before calibration, in one line."""
    if not report["applicable"]:
        return f"not equalised: {report['reason']}"
    ratios = report["disparity"]
    if not report["stages"]:
        return (f"not equalised: no stage's largest channel reaches {report['threshold']:g}x its median (at most "
                f"{max(ratios.values()):.1f}x)")
    stages = report["stages"]
    others = [r for s, r in ratios.items() if s not in stages]
    rest = f"; other stages at most {max(others):.1f}x" if others else ""
    after = ", ".join(f"{ratios[s] ** (1 - report['strength']):.1f}x" for s in stages)
    return (f"equalised before calibration: stage{'s' * (len(stages) > 1)} {', '.join(map(str, stages))} (largest "
            f"channel {', '.join(f'{ratios[s]:.1f}x' for s in stages)} the median's, {after} after the rescaling at "
            f"strength {report['strength']:g}{rest})")
