"""Vela: compile an int8 TFLite file for i.MX 93's Ethos-U65 NPU and summarise what it reports."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from .common import ExportError, last_line

VELA_ACCELERATOR = "ethos-u65-256"  # i.MX 93


def _vela_command() -> list[str] | None:
    exe = shutil.which("vela") or shutil.which("vela", path=str(Path(sys.executable).parent))
    if exe:
        return [exe]
    if importlib.util.find_spec("ethosu") is not None and importlib.util.find_spec("ethosu.vela") is not None:
        return [sys.executable, "-m", "ethosu.vela"]
    return None


def vela_available() -> bool:
    return _vela_command() is not None


def run_vela(tflite_path: str | os.PathLike, output_dir: str | os.PathLike, *,
             accelerator: str = VELA_ACCELERATOR, extra_args: list[str] | None = None) -> dict:
    """Compile an int8 .tflite for Ethos-U with Vela → {"path", "command", "summary", ...}."""
    command = _vela_command()
    if command is None:
        raise ExportError("--target imx93 needs the Vela compiler: pip install ethos-u-vela")
    tflite_path, output_dir = Path(tflite_path).resolve(), Path(output_dir).resolve()  # Vela runs in output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    args = [*command, str(tflite_path), "--accelerator-config", accelerator, "--optimise", "Performance",
            "--output-dir", str(output_dir), *(extra_args or [])]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=output_dir)
    produced = output_dir / f"{tflite_path.stem}_vela.tflite"
    if proc.returncode != 0 or not produced.is_file():
        detail = last_line(proc.stderr) or last_line(proc.stdout) or f"exit code {proc.returncode}"
        raise ExportError(f"Vela failed: {detail}")
    summary = _vela_summary(proc.stdout)
    summary.update(_vela_csv_estimate(output_dir, tflite_path.stem))
    version = subprocess.run([*command, "--version"], capture_output=True, text=True).stdout.strip()
    return {"path": str(produced), "accelerator": accelerator, "version": version,
            "command": " ".join(Path(a).name if i == 0 else a for i, a in enumerate(args)), "summary": summary}


def _vela_csv_estimate(output_dir: Path, stem: str) -> dict:
    """Vela's estimated inference time and NPU cycles, which it writes only to its summary CSV."""
    import csv

    for path in sorted(output_dir.glob(f"{stem}_summary_*.csv")):
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        if rows and rows[0].get("inference_time"):
            row = rows[0]
            return {"Estimated inference time": f"{float(row['inference_time']) * 1000:.2f} ms",
                    "NPU cycles": row.get("cycles_npu", "")}
    return {}


def _vela_summary(stdout: str) -> dict:
    """The lines of Vela's network summary that matter for deployment, plus the op types left to the CPU."""
    keys = ("Accelerator configuration", "System configuration", "Memory mode", "Accelerator clock",
            "Total SRAM used", "Total Off-chip Flash used", "Total DRAM used", "CPU operators", "NPU operators",
            "Batch Inference time", "Neural network macs")
    summary: dict = {}
    cpu_ops: Counter = Counter()
    for line in stdout.splitlines():
        stripped = line.strip()
        if stripped.startswith("Warning (supported operators) operator:"):
            cpu_ops[stripped.split("operator:", 1)[1].split(",")[0].strip()] += 1
        for key in keys:
            if stripped.startswith(key):
                summary[key] = " ".join(stripped[len(key):].lstrip(" =").split())
    if cpu_ops:
        summary["CPU operator types"] = dict(cpu_ops)
    return summary


def npu_placement(data: bytes) -> dict:
    """Where the operators of a Vela-compiled file run: its NPU partitions (one `ethos-u` custom op each), the
    operator types left on the CPU, and the CPU→NPU handovers (tensors a CPU op passes into an NPU partition:
    each one a round trip out of the NPU in the middle of an inference)."""
    from ..opprofile import op_type_name
    from .tflite_file import model_object

    model = model_object(data)
    operators = model.subgraphs[0].operators or []
    names = [op_type_name(model, op) for op in operators]
    made_on_cpu = {t for op, name in zip(operators, names) if name != "ethos-u" for t in op.outputs}
    handovers = sum(t in made_on_cpu for op, name in zip(operators, names) if name == "ethos-u" for t in op.inputs)
    cpu_types = Counter(name for name in names if name != "ethos-u")
    return {"npu_partitions": names.count("ethos-u"), "cpu_operators": dict(cpu_types),
            "cpu_to_npu_handovers": handovers}
