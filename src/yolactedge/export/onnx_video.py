"""A video model → two ONNX graphs, YOLACT-Edge's key frame and warped frame, checked together against PyTorch.

    <stem>.onnx       input → boxes, scores, masks, proto, key_p4, key_p5, key_flow_features
    <stem>_warp.onnx  input, key_p4, key_p5, key_flow_features[, key_proto] → boxes, scores, masks, proto

A key frame computes exactly the image model's outputs, so the key-frame graph also runs as an image model (its
first four outputs). The runtime, given the key-frame file, opens its partner by that naming convention; each
file's `video_graph` metadata entry says "key" or "warped". The warp is ONNX GridSample (opset 16 and later).
A model that carries prototypes (`config.carry_protos`, ours; recorded in both files' `config` metadata) gives
its warped graph a `key_proto` input, fed from the key frame's `proto` output (`runtime.tensors.memory_sources`).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..model.build import with_config
from ..model.temporal import TemporalMemory
from ..runtime.tensors import (
    VIDEO_GRAPH_KEY, VIDEO_MEMORY, memory_sources, warped_graph_path, warped_memory_inputs,
)
from .common import ONNX_OUTPUT_ORDER, ExportError, relative_error
from .onnx import (
    ONNX_TOLERANCE, OPSET, check_images, inspect_onnx, ort_session, set_metadata, torch_images, trace_to_onnx,
    write_temporary,
)


class KeyFrameGraph(nn.Module):
    """`key_frame` as one traceable function: the four outputs, then the memory tensors."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs, memory = self.model.key_frame(x)
        return (*outputs, memory.key_p4, memory.key_p5, memory.key_flow_features)


class WarpedFrameGraph(nn.Module):
    """`warped_frame` with the memory passed as tensors: key_p4, key_p5, key_flow_features[, key_proto]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, *memory: torch.Tensor) -> tuple[torch.Tensor, ...]:
        memory = TemporalMemory(*memory[:3], (x.shape[0], *x.shape[-2:]), id(self.model), *memory[3:])
        return self.model.warped_frame(x, memory)


def memory_tensors(memory: TemporalMemory) -> tuple[torch.Tensor, ...]:
    """A key frame's memory as the warped graph's memory inputs, in `warped_memory_inputs` order."""
    carried = () if memory.key_proto is None else (memory.key_proto,)
    return (memory.key_p4, memory.key_p5, memory.key_flow_features, *carried)


def export_video_onnx(model, output: str | os.PathLike, *, opset: int = OPSET, simplify: bool = True,
                      check: bool = True, tolerance: float = ONNX_TOLERANCE, progress: bool = True,
                      carry_protos: bool | None = None) -> dict:
    """Write the key-frame graph to `output` and the warped-frame graph to its `_warp` partner.

    Both appear only after onnxruntime reproduced PyTorch within `tolerance` (max abs error relative to each
    output's largest magnitude): a key frame on one synthetic image, then the next image warped from the memory
    that the ONNX key frame left. The pair carries prototypes if `carry_protos` says so, or (None) if the model's
    config does. → {"inputs", "outputs", "check", "simplified", "warped_path"}.
    """
    if not model.config.video:
        raise ExportError(f"{model.config.name} is an image model: it has no key-frame/warped-frame graphs")
    if carry_protos is not None and carry_protos != model.config.carry_protos:
        model = with_config(model, carry_protos=carry_protos)
    model = model.eval()
    output = Path(output)
    partner = warped_graph_path(output)
    images = check_images(model.config.input_size, 2)
    key_example = torch_images(images[:1])
    with torch.no_grad():
        _, memory = model.key_frame(key_example)
    warped_example = (torch_images(images[1:2]), *memory_tensors(memory))
    # The wrappers in eval mode: the exporter restores the mode it found, on the model inside too.
    key_graph, simplified = trace_to_onnx(KeyFrameGraph(model).eval(), (key_example,), ["input"],
                                          [*ONNX_OUTPUT_ORDER, *VIDEO_MEMORY], opset, simplify)
    warped_graph, _ = trace_to_onnx(WarpedFrameGraph(model).eval(), warped_example,
                                    ["input", *warped_memory_inputs(model.config.carry_protos)],
                                    list(ONNX_OUTPUT_ORDER), opset, simplify)
    set_metadata(key_graph, model.config, **{VIDEO_GRAPH_KEY: "key"})
    set_metadata(warped_graph, model.config, **{VIDEO_GRAPH_KEY: "warped"})

    temporaries = [write_temporary(key_graph, output), write_temporary(warped_graph, partner)]
    try:
        info = inspect_onnx(temporaries[0], name=output.name)
        inspect_onnx(temporaries[1], name=partner.name)
        report = None
        if check:
            report = compare_pair_with_torch(*temporaries, model, images)
            if progress:
                print(format_pair_report(report))
            worst = max(r["max_relative_error"] for r in report.values())
            if not worst <= tolerance:
                raise ExportError(f"ONNX check failed: onnxruntime differs from PyTorch by {worst:.2e} "
                                  f"(relative, limit {tolerance:.0e})")
        os.replace(temporaries[1], partner)
        os.replace(temporaries[0], output)
    except BaseException:
        for tmp in temporaries:
            tmp.unlink(missing_ok=True)
        raise
    return {"inputs": info["inputs"], "outputs": info["outputs"], "check": report, "simplified": simplified,
            "warped_path": partner}


def compare_pair_with_torch(key_path: Path, warped_path: Path, model, images: np.ndarray) -> dict[str, dict]:
    """{"key": errors, "warped": errors}: per output, max abs error and that error relative to the output's largest
    magnitude. The warped frame (images[1]) runs from each runtime's own key-frame memory (images[0])."""
    key_session, warped_session = ort_session(key_path), ort_session(warped_path)
    key_input, warped_input = torch_images(images[:1]), torch_images(images[1:2])
    names = [*ONNX_OUTPUT_ORDER, *VIDEO_MEMORY]
    ort_key = dict(zip(names, key_session.run(names, {"input": key_input.numpy()})))
    sources = memory_sources([i.name for i in warped_session.get_inputs()], "input", warped_path.name)
    ort_warped = dict(zip(ONNX_OUTPUT_ORDER, warped_session.run(
        list(ONNX_OUTPUT_ORDER), {"input": warped_input.numpy(),
                                  **{n: ort_key[s] for n, s in sources.items()}})))
    with torch.no_grad():
        outputs, memory = model.key_frame(key_input)
        torch_key = dict(zip(names, (*outputs, memory.key_p4, memory.key_p5, memory.key_flow_features)))
        torch_warped = dict(zip(ONNX_OUTPUT_ORDER, model.warped_frame(warped_input, memory)))
    return {"key": _errors(ort_key, torch_key), "warped": _errors(ort_warped, torch_warped)}


def _errors(ours: dict[str, np.ndarray], reference: dict[str, torch.Tensor]) -> dict:
    absolute, relative = {}, {}
    for name, expected in reference.items():
        expected = expected.numpy()
        if ours[name].shape != expected.shape:
            raise ExportError(f"ONNX check failed: {name} has shape {list(ours[name].shape)}, "
                              f"PyTorch {list(expected.shape)}")
        error = float(np.abs(ours[name] - expected).max())
        absolute[name] = error if np.isfinite(error) else float("inf")
        relative[name] = relative_error(ours[name], expected)
    return {"absolute_error": absolute, "relative_error": relative, "max_relative_error": max(relative.values()),
            "max_absolute_error": max(absolute.values())}


def format_pair_report(report: dict[str, dict]) -> str:
    """Two lines, one per graph: the worst errors, then each output's relative error."""
    lines = []
    for graph, errors in report.items():
        each = ", ".join(f"{k} {v:.1e}" for k, v in errors["relative_error"].items())
        lines.append(f"  {graph} frame, onnxruntime vs PyTorch: max abs error {errors['max_absolute_error']:.2e}, "
                     f"max relative {errors['max_relative_error']:.2e} ({each})")
    return "\n".join(lines)
