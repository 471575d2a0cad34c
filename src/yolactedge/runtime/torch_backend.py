"""PyTorch backend: a .pth checkpoint (or "demo", or a YolactEdge module) run in eval mode on the CPU."""
from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

from .backend import Backend, require
from .tensors import RAW_OUTPUTS, InputSpec, ModelError, RawOutputs


class TorchBackend(Backend):
    """Input float32 NCHW [1, 3, S, S]; class names from the model's config.

    num_threads sets torch's process-wide intra-op thread count (torch has no per-model setting).
    """

    name = "torch"

    def __init__(self, model: Any, *, num_threads: int | None = None) -> None:
        torch = require("torch", "torch")
        if isinstance(model, torch.nn.Module):
            if not hasattr(model, "config"):
                raise ModelError(f"{type(model).__name__} is not a YolactEdge model (it has no .config)")
            self.path = f"<{type(model).__name__} {model.config.name}>"
        else:
            from ..model.build import load_model

            self.path = os.fspath(model)
            try:
                model = load_model(model)
            except (ValueError, FileNotFoundError) as exc:  # CheckpointError is a ValueError
                raise ModelError(str(exc).splitlines()[0]) from None
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        self._torch = torch
        self.module = model.eval()
        first = next(model.parameters(), None)
        self._device = first.device if first is not None else torch.device("cpu")  # a model training on a GPU
        size = model.config.input_size
        self.input_spec = InputSpec("input", (size, size), "NCHW", np.dtype(np.float32))
        self.class_names = tuple(model.config.class_names)

    def invoke(self, tensor: np.ndarray) -> RawOutputs:
        with self._torch.inference_mode():
            outputs = self.module(self._torch.from_numpy(tensor).to(self._device))
        return RawOutputs(*(o.cpu().numpy() for o in outputs))

    def open_video(self) -> None:
        if not self.module.config.video:
            raise ModelError(f"{self.path}: {self.module.config.name} is an image model without the flow net; "
                             "keyframe_interval > 1 needs a video model (a video preset or video checkpoint)")

    def invoke_key(self, tensor: np.ndarray) -> tuple[RawOutputs, Any]:
        with self._torch.inference_mode():
            outputs, memory = self.module.key_frame(self._torch.from_numpy(tensor).to(self._device))
        return RawOutputs(*(o.cpu().numpy() for o in outputs)), memory

    def invoke_warped(self, tensor: np.ndarray, memory: Any) -> RawOutputs:
        with self._torch.inference_mode():
            outputs = self.module.warped_frame(self._torch.from_numpy(tensor).to(self._device), memory)
        return RawOutputs(*(o.cpu().numpy() for o in outputs))

    @functools.cached_property
    def output_info(self) -> dict[str, tuple[str, tuple[int, ...], str]]:
        """Shapes from one forward pass on a black image (done only when asked, e.g. by `describe`)."""
        h, w = self.input_size
        outputs = self.invoke(np.zeros((1, 3, h, w), np.float32))
        return {role: (role, tuple(o.shape), str(o.dtype)) for role, o in zip(RAW_OUTPUTS, outputs)}
