"""The tiny model the export tests convert (kept small so a TFLite conversion takes seconds)."""
from __future__ import annotations

import torch

from yolactedge import build_model

SIZE = 96


def tiny_model(seed: int = 0):
    """The demo network at 96x96 with randomised BatchNorm, so that every output varies."""
    model = build_model("yolact_edge_demo", input_size=SIZE)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
    return model.eval()
