"""Deterministic weights and input for the golden test against the original YOLACT-Edge implementation.

`tests/expect/mobilenetv2_golden.npz` holds outputs that the ORIGINAL code (haotian-liu/yolact_edge, CPU, eval
mode, pre-NMS tensors) produced for `golden_state_dict(build_model("yolact_edge_mobilenetv2"))` and
`golden_input()`. Both recipes use only torch and fixed arithmetic, so a test rebuilds exactly the same tensors
without the original code. Do not change them without regenerating the npz from the original.
"""
from __future__ import annotations

import math

import torch
from torch import nn

GOLDEN_SEED = 1234
GOLDEN_SIZE = 550

# Output convs whose activations feed a softmax/tanh/exp: smaller gain so the outputs stay in a useful range
# (loc ~ O(1), class logits ~ O(2), coefficient pre-activations ~ O(1)).
_HEAD_GAIN = {
    "prediction_layers.0.bbox_layer": 0.5,
    "prediction_layers.0.conf_layer": 1.0,
    "prediction_layers.0.mask_layer": 0.5,
    "semantic_seg_conv": 1.0,
}


def golden_state_dict(model: nn.Module, seed: int = GOLDEN_SEED) -> dict[str, torch.Tensor]:
    """A full state_dict for `model` drawn from a torch.Generator seeded with `seed` (GOLDEN_SEED for the npz).

    Modules are visited in `named_modules()` order; for each one, tensors are drawn in this fixed order:
    Conv2d: weight ~ N(0, 1) * gain / sqrt(fan_in) (gain sqrt(2), or _HEAD_GAIN for output convs),
            bias ~ U(-0.1, 0.1) when present.
    BatchNorm2d: weight ~ U(0.5, 1.0), bias ~ U(-0.1, 0.1), running_mean ~ U(-0.1, 0.1),
            running_var ~ U(0.5, 2.0), num_batches_tracked = 0.
    Every key of `model.state_dict()` is set (an error is raised otherwise), so the dict loads with strict=True.
    """
    gen = torch.Generator().manual_seed(seed)

    def uniform(shape: torch.Size, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float32)

    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, nn.Conv2d):
            weight = own[prefix + "weight"]
            fan_in = weight[0].numel()
            gain = _HEAD_GAIN.get(name, math.sqrt(2.0))
            out[prefix + "weight"] = torch.randn(weight.shape, generator=gen, dtype=torch.float32) * (gain / math.sqrt(fan_in))
            if module.bias is not None:
                out[prefix + "bias"] = uniform(module.bias.shape, -0.1, 0.1)
        elif isinstance(module, nn.BatchNorm2d):
            shape = own[prefix + "weight"].shape
            out[prefix + "weight"] = uniform(shape, 0.5, 1.0)
            out[prefix + "bias"] = uniform(shape, -0.1, 0.1)
            out[prefix + "running_mean"] = uniform(shape, -0.1, 0.1)
            out[prefix + "running_var"] = uniform(shape, 0.5, 2.0)
            out[prefix + "num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    missing = sorted(set(own) - set(out))
    extra = sorted(set(out) - set(own))
    if missing or extra:
        raise KeyError(f"golden recipe does not cover the model: missing {missing[:3]}, extra {extra[:3]}")
    return {k: out[k] for k in own}


def golden_input(size: int = GOLDEN_SIZE) -> torch.Tensor:
    """float32 [1, 3, size, size] RGB in 0..255: smooth gradients and waves plus two soft-edged shapes.

    Computed in float64 from closed-form expressions, then rounded to float32; no RNG.
    """
    t = torch.linspace(0.0, 1.0, size, dtype=torch.float64)
    y, x = torch.meshgrid(t, t, indexing="ij")
    r = 128 + 90 * torch.sin(2 * math.pi * (1.3 * x + 0.4 * y) + 0.3)
    g = 128 + 80 * torch.cos(2 * math.pi * (0.5 * x - 1.1 * y) + 1.0)
    b = 60 + 150 * x * (1 - y)
    # A soft bright disk and a dark soft square make object-like structure.
    disk = torch.sigmoid((0.18 - torch.sqrt((x - 0.35) ** 2 + (y - 0.6) ** 2)) * 60)
    square = torch.sigmoid((0.15 - torch.maximum((x - 0.72).abs(), (y - 0.3).abs())) * 60)
    img = torch.stack([r, g, b])
    img = img * (1 - disk) + torch.tensor([240.0, 200.0, 40.0], dtype=torch.float64).view(3, 1, 1) * disk
    img = img * (1 - square) + torch.tensor([20.0, 40.0, 90.0], dtype=torch.float64).view(3, 1, 1) * square
    return img.clamp(0, 255).to(torch.float32).unsqueeze(0).contiguous()


def golden_next_frame(size: int = GOLDEN_SIZE) -> torch.Tensor:
    """The frame after `golden_input` for video goldens: the same scene 6 px lower and 10 px to the right (wrapped)."""
    return torch.roll(golden_input(size), shifts=(6, 10), dims=(2, 3))
