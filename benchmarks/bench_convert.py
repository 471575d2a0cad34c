"""Time a full conversion and measure its memory: YOLACT-Edge MobileNetV2 at 550 → int8 TFLite, 100 images.

Prints each stage's wall time and peak RSS (this process plus its children, sampled every 50 ms with psutil),
then the whole run's peak from getrusage, and the export's own checks (ONNX vs PyTorch, TFLite vs ONNX). Without
a checkpoint, a random one (randomised BatchNorm statistics) is written in the official key layout and converted
from the file; synthetic calibration images unless --calib is given. Writes into a temporary folder.

    python benchmarks/bench_convert.py                     # the acceptance run: < 3 min, < 3 GB
    python benchmarks/bench_convert.py CHECKPOINT --calib DIR --precision int16x8
    python benchmarks/bench_convert.py --precision fp32      # fp32 TFLite vs ONNX at 550, official layout
    python benchmarks/bench_convert.py --preset yolact_edge_resnet50
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path


class RssSampler:
    """Peak RSS of this process and all its children, sampled in a thread; `mark()` starts a new window."""

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self.process = psutil.Process()
        self.interval = interval
        self.peak = self.window_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        total = 0
        try:
            total = self.process.memory_info().rss
            for child in self.process.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except Exception:
                    pass
        except Exception:
            pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self.rss()
            self.peak = max(self.peak, value)
            self.window_peak = max(self.window_peak, value)
            self._stop.wait(self.interval)

    def mark(self) -> int:
        """End the current window → its peak; the next window starts at the current RSS."""
        value = max(self.window_peak, self.rss())
        self.window_peak = self.rss()
        return value

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def official_layout_checkpoint(preset: str, folder: Path, seed: int = 0) -> Path:
    """A random-weight .pth holding only the state_dict in the original's key layout (no config sidecar), as
    an official checkpoint is; the exporter infers the architecture from its keys. The same `seed` gives the same
    weights, so a rerun of a benchmark measures the same model."""
    import torch

    from yolactedge import build_model
    from yolactedge.model.build import randomize_batchnorm
    from yolactedge.model.checkpoint import save_checkpoint, sidecar_path

    torch.manual_seed(seed)
    model = randomize_batchnorm(build_model(preset))
    path = save_checkpoint(model, folder / f"{preset}_random.pth")
    sidecar_path(path).unlink()
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", help="checkpoint path (default: random yolact_edge_mobilenetv2)")
    parser.add_argument("--preset", default="yolact_edge_mobilenetv2",
                        help="architecture of the random checkpoint when none is given")
    parser.add_argument("--precision", default="int8", choices=("fp32", "fp16", "int8", "int16x8"))
    parser.add_argument("--calib", help="calibration image folder (default: synthetic renders)")
    parser.add_argument("--calib-count", type=int, default=100)
    parser.add_argument("--imgsz", type=int, default=None)
    parser.add_argument("--no-verify", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no stage lines or progress bars")
    args = parser.parse_args(argv)

    with RssSampler() as sampler:
        start = time.perf_counter()
        from yolactedge.export import Stages, export_model  # timed: imports are part of the cost

        stage_peaks: dict[str, int] = {}
        original_run = Stages.run

        def run(self, name, fn, *a, **k):
            sampler.mark()
            try:
                return original_run(self, name, fn, *a, **k)
            finally:
                stage_peaks[name] = sampler.mark()

        Stages.run = run
        import_time = time.perf_counter() - start
        with tempfile.TemporaryDirectory(prefix="bench-convert-") as tmp:
            model = args.checkpoint or official_layout_checkpoint(args.preset, Path(tmp))
            output = Path(tmp) / f"model_{args.precision}.tflite"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = export_model(
                    model, "tflite", precision=args.precision, calib=args.calib, calib_count=args.calib_count,
                    imgsz=args.imgsz, output=output, verify=not args.no_verify, progress=not args.quiet,
                )
        total = time.perf_counter() - start
        Stages.run = original_run
    self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024

    print()
    print(f"conversion: {result.precision} {result.input_size}x{result.input_size}, "
          f"{(result.calibration or {}).get('used', 0)} calibration images, {result.size_bytes / 1e6:.2f} MB")
    print(f"{'stage':<30} {'time s':>8} {'peak RSS GB':>12}")
    print(f"{'imports':<30} {import_time:>8.1f} {'':>12}")
    calibration = result.calibration or {}
    for name, seconds in result.stage_times.items():
        print(f"{name:<30} {seconds:>8.1f} {stage_peaks.get(name, 0) / 1e9:>12.2f}")
        if name.startswith("TFLite") and "calibration_s" in calibration:
            label = f"  of which calibration ({calibration.get('used', 0)} img)"
            print(f"{label:<30} {calibration['calibration_s']:>8.1f} {'':>12}")
    print(f"{'total (wall)':<30} {total:>8.1f} {sampler.peak / 1e9:>12.2f}")
    print(f"getrusage max RSS: self {self_peak / 1e9:.2f} GB, children {children_peak / 1e9:.2f} GB")
    print("op histogram: " + ", ".join(f"{k} {v}" for k, v in result.op_histogram.items()))
    print(f"output order: {result.output_order}; stray ops: {result.stray_ops or 'none'}")
    if calibration:
        print(f"calibrator: {calibration.get('calibrator', '?')}")
    if result.onnx_check:
        print(f"ONNX vs PyTorch, max relative error: {result.onnx_check['max_relative_error']:.2e}")
    if result.verification:
        relative = {name: e["max_abs"] / max(abs(v) for v in e["reference_range"])
                    for name, e in result.verification["outputs"].items()}
        print(f"TFLite {result.precision} vs ONNX, max |error| / max |ONNX| per output: "
              + ", ".join(f"{k} {v:.2e}" for k, v in relative.items()))
    ok = total < 180 and max(sampler.peak, self_peak) < 3e9
    print(f"budget (< 180 s, < 3 GB): {'OK' if ok else 'EXCEEDED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
