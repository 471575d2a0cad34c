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

    path = resolve_model_path(model)
    if path.suffix == ".tflite":
        compiled = _describe_compiled(path)
        if compiled is not None:
            return compiled
    detector = Detector(model)
    return "\n".join([detector.describe(), *_export_lines(path)])


def _export_lines(path: Path) -> list[str]:
    """What the export recorded in a .tflite file: preset, precision, target (a target's graph differs, e.g. the
    cpu target's float box decode), and the version that wrote it; nothing for a file without our metadata."""
    from .export.common import TARGET_GRAPHS
    from .modelmeta import read_tflite_metadata

    meta = read_tflite_metadata(path) if path.suffix == ".tflite" else None
    if not meta:
        return []
    target = meta.get("target")
    kept = TARGET_GRAPHS[target].kept_in_float() if target in TARGET_GRAPHS else []
    in_float = f" ({', '.join(kept)} in float)" if kept and meta.get("precision") == "int8" else ""
    return [f"export      {meta.get('preset')}, {meta.get('precision')}, target {target or 'none'}{in_float}, "
            f"yolactedge {meta.get('yolactedge_version')}"]


def _describe_compiled(path: Path) -> str | None:
    """A TFLite file holding custom ops (Vela's ethos-u for the i.MX 93's NPU), which LiteRT cannot run without
    their delegate: described from the file itself. None for a plain TFLite file."""
    from .export.tflite_file import inspect_tflite
    from .modelmeta import read_tflite_metadata

    try:
        info = inspect_tflite(path)
    except (ValueError, RuntimeError):  # not a TFLite file: the Detector's loading says so, naming the file
        return None
    builtin = set(_builtin_op_names())
    custom = [name for name in info["op_histogram"] if name not in builtin]
    if not custom:
        return None
    ops = ", ".join(f"{name} {count}" for name, count in info["op_histogram"].items())
    lines = [f"model       {path}",
             f"compiled    custom op {', '.join(custom)}: runs only through its delegate"
             + (" (Ethos-U NPU, e.g. i.MX 93; compiled by Vela)" if "ethos-u" in custom else ""),
             f"ops         {ops}"]
    for tensor in info["inputs"]:
        quant = " scale {:g}, zero point {}".format(*tensor["quantization"]) if tensor.get("quantization") else ""
        lines.append(f"input       {tensor['name']} {tensor['dtype']} {tensor['shape']}{quant}")
    for tensor in info["outputs"]:
        lines.append(f"output      {tensor['name']:<7} {tensor['dtype']} {tensor['shape']}")
    names = (read_tflite_metadata(path) or {}).get("class_names")
    if names:
        lines.append(f"classes     {len(names)} ({', '.join(names[:8])}{', ...' if len(names) > 8 else ''})")
    return "\n".join(lines)


def _builtin_op_names() -> list[str]:
    from ai_edge_litert import schema_py_generated as schema

    return [name for name in vars(schema.BuiltinOperator) if name.isupper()]
