"""Per-target int8 graphs: Vela's placement on the i.MX 93's Ethos-U65, CPU speed, and output error.

Exports one checkpoint with `yolactedge export --target T` for T in cpu, imx8mp and imx93, then prints a table:

- Vela (Ethos-U65-256): NPU and CPU operators, NPU partitions, CPU→NPU handovers mid-inference, the operator types
  left on the CPU and Vela's estimated time (its NPU time only: operators left on the CPU are not in it). imx8mp's
  row is its plain graph put through Vela (what the Ethos-U65 got before the imx93 graph); the cpu graph's float
  operators cannot run on the NPU, so it has none.
- CPU: per-operator profile (`yolactedge bench --ops`) and whole-model medians from interleaved runs, as a ratio
  to imx8mp's plain graph. imx93's file holds an Ethos-U custom operator that runs only on the NPU.
- max |TFLite - float ONNX| per output on the export's 4 held-out images (imx93: the int8 graph before Vela).

    python benchmarks/bench_targets.py                              # MobileNetV2 at 550, random weights
    python benchmarks/bench_targets.py --checkpoint CKPT --keep DIR
    python benchmarks/bench_targets.py --keep DIR --reuse           # measure the files a --keep run left again

Writes the full result to benchmarks/results/targets.json (or --json-out).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_convert import official_layout_checkpoint  # noqa: E402
from results_file import write_results  # noqa: E402

TARGETS = ("cpu", "imx8mp", "imx93")
OUTPUTS = ("boxes", "scores", "proto", "masks")


def export_targets(checkpoint: str, workdir: Path, calib_count: int) -> dict[str, dict]:
    """`export_model(checkpoint, target=T)` for every target → {target: the export's result as a dict}."""
    from yolactedge.export import export_model

    results = {}
    for target in TARGETS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # synthetic calibration images
            result = export_model(checkpoint, "tflite", target=target, calib_count=calib_count,
                                  output=workdir / f"{target}.tflite", progress=False)
        results[target] = result.to_dict()
        (workdir / f"{target}.result.json").write_text(json.dumps(results[target], indent=1))
    return results


def vela_rows(results: dict[str, dict], workdir: Path) -> dict[str, dict | None]:
    """Vela's summary and placement per target: imx93's from its export, imx8mp's plain graph compiled here."""
    from yolactedge.export.vela import npu_placement, run_vela

    plain = run_vela(workdir / "imx8mp.tflite", workdir / "vela_imx8mp")
    plain["placement"] = npu_placement(Path(plain["path"]).read_bytes())
    return {"cpu": None, "imx8mp": plain, "imx93": results["imx93"]["vela"]}


def format_table(results: dict[str, dict], vela: dict[str, dict | None], cpu_ms: dict[str, float]) -> str:
    header = ("| target | Ethos-U65: NPU / CPU ops | partitions, CPU→NPU handovers | on the CPU | Vela estimate "
              "| CPU whole model (ratio to imx8mp) | max abs error: " + ", ".join(OUTPUTS) + " |")
    lines = [header, "|" + "---|" * 7]
    for target in TARGETS:
        row = vela[target]
        if row is None:
            placement_cells = ["float ops: not for the NPU", "", "", ""]
        else:
            summary, place = row["summary"], row["placement"]
            placement_cells = [f"{summary['NPU operators'].split()[0]} / {summary['CPU operators'].split()[0]}",
                               f"{place['npu_partitions']}, {place['cpu_to_npu_handovers']}",
                               ", ".join(f"{k} {v}" for k, v in place["cpu_operators"].items()),
                               summary.get("Estimated inference time", "?")]
        ms = cpu_ms.get(target)
        cpu_cell = f"{ms:.1f} ms ({ms / cpu_ms['imx8mp']:.3f})" if ms else "NPU only"
        errors = results[target]["verification"]["outputs"]
        error_cell = ", ".join(f"{errors[name]['max_abs']:.4f}" for name in OUTPUTS)
        lines.append(f"| {target} | " + " | ".join([*placement_cells, cpu_cell, error_cell]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a .pth (default: MobileNetV2 at 550, random weights)")
    parser.add_argument("--calib-count", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20, help="timed runs per operator and of the whole model")
    parser.add_argument("--keep", help="keep the exported files in this folder")
    parser.add_argument("--reuse", action="store_true", help="with --keep: measure the files already there")
    parser.add_argument("--json-out", default=str(Path(__file__).parent / "results" / "targets.json"))
    args = parser.parse_args(argv)

    from yolactedge.opprofile import format_outside, format_side_by_side, profile_side_by_side

    with contextlib.ExitStack() as stack:
        workdir = Path(args.keep) if args.keep else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        workdir.mkdir(parents=True, exist_ok=True)
        if args.reuse:
            if not args.keep:
                parser.error("--reuse needs --keep DIR")
            results = {t: json.loads((workdir / f"{t}.result.json").read_text()) for t in TARGETS}
        else:
            checkpoint = args.checkpoint or official_layout_checkpoint("yolact_edge_mobilenetv2", workdir)
            results = export_targets(str(checkpoint), workdir, args.calib_count)
        vela = vela_rows(results, workdir)
        on_cpu = ["imx8mp", "cpu"]
        profiles = profile_side_by_side([workdir / f"{t}.tflite" for t in on_cpu], threads=args.threads,
                                        runs=args.runs)
        print(f"per-operator profile, {args.threads} threads, {platform.processor() or platform.machine()}")
        print(format_side_by_side(profiles, [f"--target {t}" for t in on_cpu]))
        for profile in profiles:
            print(format_outside(profile))
        cpu_ms = {t: p.whole_model_ms for t, p in zip(on_cpu, profiles)}
        print()
        print(format_table(results, vela, cpu_ms))
        output = {"results": results, "vela": vela, "cpu_whole_model_ms": cpu_ms,
                  "profiles": {t: p.to_dict() for t, p in zip(on_cpu, profiles)}}
    print(f"\nwritten: {write_results(args.json_out, output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
