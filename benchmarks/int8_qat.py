"""Does a short quantization-aware fine-tune raise the demo's int8 box AP? The one lever docs/int8-accuracy.md had left.

The fine-tune needs no labels: a copy of the demo model (the student), with int8 fake quantization on the output
of every tensor the int8 TFLite file stores (every ReLU / ReLU6, each inverted residual's projection and sum, the
FPN's outputs and the head's three convolutions, one range per pyramid level, taken as the converter takes them:
min/max over the README's 100 calibration renders), learns to reproduce the float demo model's raw outputs (the
teacher) on fresh synthetic renders. The box regressions' error is weighted by the teacher's foreground probability
(where boxes are kept) and by --loc-weight. BatchNorm keeps its statistics, so the exported graph folds it as before.
Gradients pass the fake quantization straight through inside the range.

The student's weights then go through the normal int8 export, calibrated on 100 renders of each --seeds set, beside
the default export of the demo's own weights on the same set (paired: the calibration set alone moves box AP by
0.4%, `int8_box_spread.py`). AP on the first --images held-out images, as a share of the float demo model's.

    python benchmarks/int8_qat.py          # 1,200 steps, paired over 5 calibration sets, all 500 images
    python benchmarks/int8_qat.py --weights student.pth --seeds 3,4      # evaluate a saved student again
    python benchmarks/int8_qat.py --weights student.pth --min-disparity 4  # both exported with the exporter's
                                                                           # stream equalisation (export.equalise)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from int8_accuracy import calibration_samples, convert, held_out_set  # noqa: E402
from readme_figures import CALIB_SEED  # noqa: E402
from results_file import write_results  # noqa: E402

RESULTS = Path(__file__).parent / "results"
TRAIN_SEED = 1  # the demo model's training renders, never the held-out seed


def quantization_points(model) -> list[tuple[str, object]]:
    """(name, module) whose outputs the int8 file stores as int8 tensors."""
    from torch import nn

    from yolactedge.model.backbone import InvertedResidual

    points = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.ReLU6, nn.ReLU)):
            points.append((name, module))
        elif isinstance(module, InvertedResidual):
            points.append((f"{name}.projection", module.conv[-1]))
            if module.use_residual:
                points.append((name, module))
    head = model.prediction_layers[0]
    points += [("head.bbox", head.bbox_layer), ("head.conf", head.conf_layer), ("head.mask", head.mask_layer),
               ("fpn_phase_1", model.fpn_phase_1), ("fpn_phase_2", model.fpn_phase_2)]
    return points


class FakeInt8:
    """Per-tensor int8 ranges observed on calibration images, then applied as fake quantization to the outputs of
    `quantization_points` (one range per output shape, so each pyramid level of the shared head has its own)."""

    def __init__(self, model) -> None:
        self.model, self.ranges = model, {}

    @staticmethod
    def _key(name: str, index: int, tensor) -> tuple:
        return name, index, tuple(tensor.shape[-2:])

    def observe(self, images) -> None:
        def record(key, tensor):
            low, high = float(tensor.min()), float(tensor.max())
            seen = self.ranges.get(key, (low, high))
            self.ranges[key] = (min(seen[0], low), max(seen[1], high))

        self.each_output(images, record)

    def each_output(self, images, record, selected=lambda name: True) -> None:
        """Run the model over `images` (batches of 20, no gradients) and call record(key, tensor) with every
        output of the quantization points whose names `selected` accepts."""
        import torch

        def hook(name):
            def forward_hook(_module, _inputs, output):
                for index, tensor in self._outputs(output):
                    record(self._key(name, index, tensor), tensor)
            return forward_hook

        handles = [m.register_forward_hook(hook(n)) for n, m in quantization_points(self.model) if selected(n)]
        try:
            with torch.no_grad():
                for start in range(0, len(images), 20):
                    self.model(images[start:start + 20])
        finally:
            for handle in handles:
                handle.remove()

    @staticmethod
    def _outputs(output):
        return enumerate(output) if isinstance(output, (list, tuple)) else [(-1, output)]

    def _quantize(self, key, tensor):
        import torch

        low, high = min(self.ranges[key][0], 0.0), max(self.ranges[key][1], 0.0)
        scale = max((high - low) / 255, 1e-8)
        zero_point = max(-128, min(127, round(-128 - low / scale)))
        return torch.fake_quantize_per_tensor_affine(tensor, scale, zero_point, -128, 127)

    def attach(self, selected=lambda name: True) -> None:
        """Fake quantization on the outputs of the quantization points whose names `selected` accepts."""
        def hook(name):
            def quantize(_module, _inputs, output):
                quantized = [self._quantize(self._key(name, i, t), t) for i, t in self._outputs(output)]
                return type(output)(quantized) if isinstance(output, (list, tuple)) else quantized[0]
            return quantize

        for name, module in quantization_points(self.model):
            if selected(name):
                module.register_forward_hook(hook(name))


def distillation_losses(teacher, student, x, loc_weight: float = 20.0) -> dict:
    """{name: loss} of the student's raw outputs on `x` against the teacher's: the box regressions weighted by the
    teacher's foreground probability (where boxes are kept) and by `loc_weight`, the prototypes by their variance."""
    import torch

    def raw(model):
        _pyramid, loc, conf, coef, _priors, proto = model._features(x)
        return loc, conf, coef, proto

    with torch.no_grad():
        loc_t, conf_t, coef_t, proto_t = raw(teacher)
        foreground = 1 - torch.softmax(conf_t, -1)[..., 0]
        weight = foreground / foreground.mean()
    loc_s, conf_s, coef_s, proto_s = raw(student)
    return {
        "loc": loc_weight * (((loc_s - loc_t) ** 2).mean(-1) * weight).mean(),
        "conf": ((conf_s - conf_t) ** 2).mean(),
        "coef": (((coef_s - coef_t) ** 2).mean(-1) * weight).mean(),
        "proto": ((proto_s - proto_t) ** 2).mean() / (proto_t.var() + 1e-6),
    }


def fine_tune(iters: int, lr: float, loc_weight: float, batch: int) -> dict:
    """The student's state dict after `iters` distillation steps (Adam, constant `lr`)."""
    import numpy as np
    import torch

    from yolactedge.data.synthetic import render_sample, sample_rng
    from yolactedge.model.build import load_model

    torch.manual_seed(0)
    teacher, student = load_model("demo").eval(), load_model("demo").eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    fake = FakeInt8(student)
    fake.observe(torch.from_numpy(np.stack(calibration_samples(RESULTS))).float().permute(0, 3, 1, 2))
    fake.attach()

    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    started = time.perf_counter()
    for step in range(iters):
        images = [render_sample(sample_rng(TRAIN_SEED * 100_000 + step, i), 320)[0] for i in range(batch)]
        x = torch.from_numpy(np.stack(images)).float().permute(0, 3, 1, 2)
        if step % 2:
            x = x.flip(-1)
        losses = distillation_losses(teacher, student, x, loc_weight)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
        if step % 100 == 0 or step == iters - 1:
            print(f"  step {step}: " + " ".join(f"{k} {float(v.detach()):.5f}" for k, v in losses.items())
                  + f" ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    return student.state_dict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=1200)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--loc-weight", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seeds", default=f"{CALIB_SEED},1,2,3,4", help="calibration sets (100 renders each) to pair over")
    parser.add_argument("--images", type=int, default=500, help="held-out images evaluated (of 500)")
    parser.add_argument("--weights", help="evaluate this saved student instead of fine-tuning one")
    parser.add_argument("--save", help="write the student's state dict here")
    parser.add_argument("--min-disparity", type=float, default=float("inf"),
                        help="equalise the int8 exports' streams as `yolactedge export` does, here from this "
                             "disparity (4: the export's default; default: none, as the results file was made)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json-out", default=str(RESULTS / "int8_qat.json"))
    args = parser.parse_args(argv)

    import torch

    from yolactedge.evaluate import compare
    from yolactedge.export.equalise import equalised_streams
    from yolactedge.export.onnx import export_onnx, resolve_model

    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    val = held_out_set(RESULTS)
    state = torch.load(args.weights, map_location="cpu") if args.weights else fine_tune(
        args.iters, args.lr, args.loc_weight, args.batch)
    if args.save:
        torch.save(state, args.save)
    files: dict[str, Path] = {}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        work = Path(tmp)
        demo, student = resolve_model("demo", None).module, resolve_model("demo", None).module
        student.load_state_dict(state)
        export_onnx(demo, work / "demo.onnx", progress=False)
        export_onnx(student, work / "student.onnx", progress=False)
        files["float"] = convert(work / "demo.onnx", work, "fp32", None, work / "fp32.tflite")
        files["student float"] = convert(work / "student.onnx", work, "fp32", None, work / "student_fp32.tflite")
        for seed in seeds:
            images = calibration_samples(RESULTS, seed)
            for label, module, stem in (("default", demo, "d"), ("student", student, "s")):
                onnx_path = work / f"{stem}{seed}.onnx"
                with equalised_streams(module, images, args.min_disparity):
                    export_onnx(module, onnx_path, progress=False)
                files[f"{label} {seed}"] = convert(onnx_path, work, "int8", images, work / f"{stem}{seed}.tflite")
        rows = compare([str(p) for p in files.values()], val / "images", val / "annotations.json",
                       limit=args.images, num_threads=args.threads, progress=False)
    ap = {label: (row.box_ap, row.mask_ap) for label, row in zip(files, rows)}
    float_box, float_mask = ap["float"]
    how = f"--weights {Path(args.weights).name}" if args.weights else (
        f"--iters {args.iters} --lr {args.lr:g} --loc-weight {args.loc_weight:g} --batch {args.batch}")
    how += f", streams equalised from disparity {args.min_disparity:g}" if args.min_disparity != float("inf") else ""
    print(f"demo model, first {args.images} held-out images; student: {how}")
    print(f"float (fp32 file): box AP {float_box:.4f}, mask AP {float_mask:.4f}; the student's fp32 file: box AP "
          f"{ap['student float'][0]:.4f}, mask AP {ap['student float'][1]:.4f}")
    print("| calibration seed | default int8 box AP | student int8 box AP | paired gain | default mask AP | "
          "student mask AP |")
    print("|---|---|---|---|---|---|")
    table = []
    for seed in seeds:
        (d_box, d_mask), (s_box, s_mask) = ap[f"default {seed}"], ap[f"student {seed}"]
        print(f"| {seed} | {d_box:.4f} ({100 * d_box / float_box:.2f}%) | {s_box:.4f} ({100 * s_box / float_box:.2f}%) "
              f"| {s_box - d_box:+.4f} | {d_mask:.4f} | {s_mask:.4f} |")
        table.append({"seed": seed, "default": [d_box, d_mask], "student": [s_box, s_mask]})
    mean_d = statistics.mean(r["default"][0] for r in table)
    mean_s = statistics.mean(r["student"][0] for r in table)
    print(f"| mean | {mean_d:.4f} ({100 * mean_d / float_box:.2f}%) | {mean_s:.4f} ({100 * mean_s / float_box:.2f}%) "
          f"| {mean_s - mean_d:+.4f} | | |")
    write_results(args.json_out, {"images": args.images, "student": how, "float": ap["float"],
                                  "student_float": ap["student float"], "rows": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
