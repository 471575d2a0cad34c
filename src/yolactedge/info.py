"""`yolactedge info`: what a model file is, in a few readable lines."""
from __future__ import annotations

from pathlib import Path

from .assets import resolve_model_path


def describe_model(model: str) -> str:
    path = resolve_model_path(model)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    if path.suffix in (".onnx", ".tflite"):
        return _describe_exported(str(model))
    return _describe_checkpoint(path)


def _describe_checkpoint(path: Path) -> str:
    import torch

    from .model.build import count_macs, load_model

    model = load_model(path)
    c = model.config
    size = c.input_size
    with torch.no_grad():
        outputs = model(torch.zeros(1, 3, size, size))
    params = sum(p.numel() for p in model.parameters())
    names = ", ".join(c.class_names[:6]) + (", ..." if len(c.class_names) > 6 else "")
    lines = [
        f"model       {path}",
        f"config      {c.name} (backbone {c.backbone}, FPN {c.fpn_channels}, protonet {c.proto_channels}, "
        f"{c.mask_dim} prototypes, anchors {list(c.pred_scales)} px x {len(c.aspect_ratios)} ratios)",
        f"classes     {c.num_classes - 1} ({names})",
        f"parameters  {params:,}",
        f"MACs        {count_macs(model) / 1e9:.2f} G at {size}x{size} (convolutions actually run)",
        f"input       input float32 [1, 3, {size}, {size}] RGB 0..255",
    ]
    for name, tensor in zip(("boxes", "scores", "masks", "proto"), outputs):
        lines.append(f"output      {name:<7} float32 {list(tensor.shape)}")
    return "\n".join(lines)


def _describe_exported(model: str) -> str:
    from .runtime import Detector

    detector = Detector(model)
    return detector.describe()
