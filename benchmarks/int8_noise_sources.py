"""Which int8 roundings make the demo's box regressions noisy: a simulation in PyTorch, one source at a time.

The int8 file's roundings are simulated on the demo model: per-tensor int8 activations on every tensor the int8 file
stores (`int8_qat.FakeInt8`: min/max over the README's 100 calibration renders, as the converter takes them) and
per-output-channel symmetric int8 weights (the converter's scheme; BatchNorm scales each output channel, so this is
the same before and after folding). Each row turns on one group of roundings; the table gives the box regressions'
SNR against float per pyramid level on the first --images held-out images, each anchor weighted by the float
model's foreground probability (where boxes are kept). Noise from separate sources adds, so the smallest SNRs are
the sources that matter. The last rows repeat the rounding of every activation (and then of everything) after
`yolactedge.export.equalise` has equalised the backbone's residual streams, fully and halfway, and then with the
residual streams of stages 1 to 4 given the range whose int8 rounding errs least over the calibration set instead
of min/max (`int8_mse_ranges.least_error_range`; what that gives on AP: `int8_mse_ranges.py`). The very last row
learns every range instead, weights frozen: each end scaled by a learned factor so that the rounded model's raw
outputs on the calibration images come closest to the float model's (the loss of `int8_qat.py`'s fine-tune; zero
kept on the grid, as the converter keeps it; rounding passed straight through): what the ranges alone could give
a learned-range quantization-aware fine-tune.

    python benchmarks/int8_noise_sources.py
"""
from __future__ import annotations

import argparse
import contextlib
import fnmatch
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from int8_accuracy import calibration_samples, held_out_set  # noqa: E402
from int8_mse_ranges import BINS, least_error_range  # noqa: E402
from int8_qat import FakeInt8, distillation_losses  # noqa: E402

RESULTS = Path(__file__).parent / "results"
GROUPS = {
    "stem and stage 1": ("backbone.layers.0.", "backbone.layers.1."),
    "stage 2": ("backbone.layers.2.",), "stage 3": ("backbone.layers.3.",), "stage 4": ("backbone.layers.4.",),
    "stage 5": ("backbone.layers.5.",), "stage 6 (C5)": ("backbone.layers.6.",), "FPN": ("fpn_phase",),
    "prediction head": ("prediction_layers.", "head."),
}
STAGE_6_RELU6 = "backbone.layers.6.*.conv.*"  # the expansions' and depthwise convolutions' ReLU6 outputs
EARLY_STREAMS = re.compile(r"backbone\.layers\.[1-4]\.\d+(\.projection)?")  # stages 1-4: projections and sums


def round_weights(model) -> None:
    """Every convolution's weights on a per-output-channel symmetric int8 grid."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                step = module.weight.abs().amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-12) / 127
                module.weight.copy_(torch.round(module.weight / step) * step)


LEARNING_STEPS, LEARNING_BATCH, LEARNING_RATE = 120, 4, 0.01


def round_activations(model, calibration, selected, by_error=None, learned: bool = False) -> None:
    """int8 fake quantization on the stored tensors whose names `selected(name)` accepts; those `by_error(name)`
    accepts get the range with the least rounding error over the calibration images instead of min/max; with
    `learned`, every range is learned against the float model's outputs (`LearnedRanges`)."""
    fake = LearnedRanges(model) if learned else FakeInt8(model)
    fake.observe(calibration)
    if by_error is not None:
        ranges_by_error(fake, calibration, by_error)
    fake.attach(selected)
    if learned:
        fake.learn(calibration)


def straight_round(values):
    """Rounded values whose gradient is the identity's."""
    return values + (values.round() - values).detach()


class LearnedRanges(FakeInt8):
    """FakeInt8 whose ranges' ends are each scaled by exp(a learned parameter), with zero on the grid."""

    def __init__(self, model) -> None:
        super().__init__(model)
        self.factors: dict = {}

    def _quantize(self, key, tensor):
        import torch

        if key not in self.factors:
            self.factors[key] = torch.nn.Parameter(torch.zeros(2))
        low, high = min(self.ranges[key][0], 0.0), max(self.ranges[key][1], 0.0)
        low, high = low * torch.exp(self.factors[key][0]), high * torch.exp(self.factors[key][1])
        scale = (high - low) / 255
        low = -straight_round(-low / scale) * scale
        steps = straight_round((torch.minimum(torch.maximum(tensor, low), low + 255 * scale) - low) / scale)
        return steps * scale + low

    def learn(self, calibration) -> None:
        """LEARNING_STEPS Adam steps on batches of the calibration images (flipped every other step)."""
        import torch

        from yolactedge.model.build import load_model

        teacher = load_model("demo").eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.model(calibration[:1])  # creates every factor
        optimizer = torch.optim.Adam(list(self.factors.values()), lr=LEARNING_RATE)
        for step in range(LEARNING_STEPS):
            start = int(torch.randint(0, len(calibration) - LEARNING_BATCH + 1, (1,), generator=generator))
            x = calibration[start:start + LEARNING_BATCH]
            x = x.flip(-1) if step % 2 else x
            loss = sum(distillation_losses(teacher, self.model, x).values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def ranges_by_error(fake: FakeInt8, calibration, selected) -> None:
    """Replace the observed min/max of the quantization points `selected(name)` accepts by `least_error_range`
    over a histogram of their values on the calibration images."""
    import numpy as np

    bounds = {key: (min(low, 0.0), max(high, 0.0)) for key, (low, high) in fake.ranges.items() if selected(key[0])}
    histograms = {key: np.zeros(BINS) for key in bounds}

    def record(key, tensor):
        histograms[key] += np.histogram(tensor.numpy().ravel(), BINS, bounds[key])[0]

    fake.each_output(calibration, record, selected)
    for key, histogram in histograms.items():
        fake.ranges[key] = least_error_range(histogram, *bounds[key])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24, help="held-out images (of 500)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import cv2
    import numpy as np
    import torch

    from yolactedge.export.equalise import STRENGTH, equalised_streams
    from yolactedge.model.build import load_model

    torch.set_num_threads(args.threads)
    samples = calibration_samples(RESULTS)
    calibration = torch.from_numpy(np.stack(samples)).float().permute(0, 3, 1, 2)
    paths = sorted((held_out_set(RESULTS) / "images").iterdir())[:args.images]
    images = np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths])
    x = torch.from_numpy(images).float().permute(0, 3, 1, 2)

    def regressions(model):
        with torch.no_grad():
            pyramid, loc, conf, *_ = model._features(x)
        return loc, conf, [level.shape[-2] * level.shape[-1] for level in pyramid]

    loc_float, conf_float, cells = regressions(load_model("demo"))
    weight = 1 - torch.softmax(conf_float, -1)[..., 0]
    anchors = loc_float.shape[1] // sum(cells)
    bounds = np.cumsum([0] + [n * anchors for n in cells])

    def snr(model) -> list[float]:
        loc = regressions(model)[0]
        out = []
        for start, stop in zip(bounds[:-1], bounds[1:]):
            w = weight[:, start:stop]
            noise = (((loc - loc_float)[:, start:stop] ** 2).mean(-1) * w).sum()
            signal = ((loc_float[:, start:stop] ** 2).mean(-1) * w).sum()
            out.append(float(10 * torch.log10(signal / noise)))
        return out

    def row(label: str, weights: bool, selected, strength: float | None = None, by_error=None,
            learned: bool = False) -> None:
        model = load_model("demo")
        with equalised_streams(model, samples, strength=strength) if strength else contextlib.nullcontext():
            if weights:
                round_weights(model)
            if selected is not None:
                round_activations(model, calibration, selected, by_error, learned)
            values = snr(model)
        print(f"| {label} | " + " | ".join(f"{v:.1f}" for v in values) + " |", flush=True)

    print(f"demo model at 320, first {args.images} held-out images: box regressions' SNR against float (dB), "
          "foreground-weighted")
    print("| int8 rounding of | " + " | ".join(f"P{3 + i}" for i in range(len(cells))) + " |")
    print("|---|" + "---|" * len(cells))
    def every(_name: str) -> bool:
        return True

    def stage_6(name: str) -> bool:
        return name.startswith(GROUPS["stage 6 (C5)"])

    row("everything (weights and activations)", True, every)
    row("weights only", True, None)
    row("activations only", False, every)
    for label, prefixes in GROUPS.items():
        row(f"activations of {label} only", False, lambda name, p=prefixes: name.startswith(p))
    row("activations of stage 6's residual stream only (projections and sums)", False,
        lambda name: stage_6(name) and not fnmatch.fnmatch(name, STAGE_6_RELU6))
    row("activations of stage 6's ReLU6 outputs only", False, lambda name: fnmatch.fnmatch(name, STAGE_6_RELU6))
    for strength in (1.0, 0.5):
        streams = f"streams equalised at strength {strength:g}" + " (the export's)" * (strength == STRENGTH)
        row(f"{streams}: activations of stage 6 (C5) only", False, stage_6, strength)
        row(f"{streams}: activations only", False, every, strength)
        row(f"{streams}: everything", True, every, strength)
    early = EARLY_STREAMS.fullmatch
    row(f"streams equalised at strength {STRENGTH:g}, stages 1-4's streams' ranges by error: activations only",
        False, every, STRENGTH, early)
    row(f"streams equalised at strength {STRENGTH:g}, stages 1-4's streams' ranges by error: everything",
        True, every, STRENGTH, early)
    row(f"streams equalised at strength {STRENGTH:g}, every range learned ({LEARNING_STEPS} steps): everything",
        True, every, STRENGTH, learned=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
