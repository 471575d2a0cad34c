"""The front door: build a model from a preset or config, or load one from a checkpoint."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from ..assets import resolve_model_path
from ..config import ModelConfig, get_preset
from .checkpoint import infer_config, load_state_dict_into, read_sidecar, read_state_dict
from .yolact import YolactEdge


def build_model(
    config: ModelConfig | str = "yolact_edge_mobilenetv2", *, num_classes: int | None = None, input_size: int | None = None
) -> YolactEdge:
    """A freshly initialised model (Xavier-uniform convs outside the backbone, as the original).

    >>> model = build_model("yolact_edge_mobilenetv2", num_classes=81)
    """
    if isinstance(config, str):
        config = get_preset(config)
    if num_classes is not None:
        config = config.replace(num_classes=num_classes)
    if input_size is not None:
        config = config.at_input_size(input_size)
    model = YolactEdge(config)
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and not name.startswith("backbone."):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model.eval()


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm the spread of statistics a trained network has (fresh ones are 0/1, which makes a
    random-weight model's outputs nearly flat): what export checks and benchmarks on random weights need."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
    return model


def load_model(
    path: str | os.PathLike, config: ModelConfig | str | None = None, *, video: bool | None = None,
    carry_protos: bool | None = None,
) -> YolactEdge:
    """Load weights in the official (or a legacy) layout into a model in eval mode.

    The config comes from `config` if given, else the checkpoint's JSON sidecar, else the tensors themselves.
    `path` may be "demo" for the shipped demo model. `video` overrides the config's video mode: True asks for
    key_frame/warped_frame (an image-only checkpoint is then refused), False ignores a video checkpoint's flow net.
    `carry_protos` overrides whether warped frames carry the key frame's prototypes (ours; video models only).
    """
    path = resolve_model_path(path)
    state_dict = read_state_dict(path)
    if isinstance(config, str):
        config = get_preset(config)
    config = config or read_sidecar(path) or infer_config(state_dict)
    if video is not None:
        config = config.replace(video=video)
    if carry_protos is not None:
        config = config.replace(carry_protos=carry_protos)
    model = YolactEdge(config)
    ignored = load_state_dict_into(model, state_dict)
    if ignored:
        warnings.warn(f"{Path(path).name}: {len(ignored)} keys unused for single-image inference ({ignored[0]}, ...)", stacklevel=2)
    return model.eval()


def with_config(model: YolactEdge, **changes) -> YolactEdge:
    """The same weights (copied) in a model whose config has `changes`, e.g. carry_protos=True; in eval mode."""
    changed = YolactEdge(model.config.replace(**changes))
    changed.load_state_dict(model.state_dict())
    return changed.eval()


def count_macs(model: YolactEdge, input_size: int | None = None) -> int:
    """Multiply-accumulates of every convolution the forward pass runs, for one image."""
    size = input_size or model.config.input_size
    total = 0

    def hook(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += kh * kw * (module.in_channels // module.groups) * output.shape[1] * output.shape[2] * output.shape[3]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    finally:
        for h in handles:
            h.remove()
    return total
