"""Signs that a run has gone bad, caught when they happen rather than after hours of training a broken model.

A non-finite loss, or BatchNorm running statistics that are non-finite or huge, mean the weights are already
ruined: the run stops before saving them, so the last checkpoint stays the last good one. Steps skipped for
non-finite gradients are survivable one at a time, but a streak of them is reported as it grows.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

# BatchNorm variances of a healthy network stay far below this (activations of magnitude ~1e3).
MAX_RUNNING_VAR = 1e6
# A warning for every this many consecutive skipped steps.
SKIP_REPORT_EVERY = 10


class TrainingDiverged(RuntimeError):
    """The run stopped because its weights went bad; the message says where and what to change."""


class HealthCheck:
    """Checks after each step: a finite loss, and finite, bounded BatchNorm running statistics."""

    def __init__(self, model: nn.Module) -> None:
        self.batchnorms = [(name, m) for name, m in model.named_modules()
                           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_var is not None]

    def problem(self, losses: Mapping[str, float]) -> str | None:
        """Why the run must stop after this step, or None while it is healthy."""
        bad = [k for k, v in losses.items() if not math.isfinite(v)]
        if bad:
            return f"the loss is not finite ({', '.join(f'{k}={losses[k]}' for k in bad)})"
        if not self.batchnorms:
            return None
        with torch.no_grad():  # one device sync for all layers: max and sum propagate NaN and inf
            var_max = torch.stack([m.running_var.max() for _, m in self.batchnorms])
            mean_sum = torch.stack([m.running_mean.sum() for _, m in self.batchnorms])
            bad_layer = ~torch.isfinite(var_max) | ~torch.isfinite(mean_sum) | (var_max > MAX_RUNNING_VAR)
            if not bool(bad_layer.any()):
                return None
            index = int(bad_layer.nonzero()[0])
        name, value = self.batchnorms[index][0], float(var_max[index])
        if math.isfinite(value) and math.isfinite(float(mean_sum[index])):
            return f"BatchNorm {name} running_var reached {value:.3g} (> {MAX_RUNNING_VAR:g})"
        return f"BatchNorm {name} has non-finite running statistics"


class SkipStreak:
    """Counts consecutive skipped steps; `record` returns a warning every SKIP_REPORT_EVERY of them."""

    def __init__(self) -> None:
        self.length = 0

    def record(self, taken: bool, iteration: int) -> str | None:
        self.length = 0 if taken else self.length + 1
        if self.length and self.length % SKIP_REPORT_EVERY == 0:
            return (f"{self.length} consecutive steps skipped for non-finite gradients (iteration {iteration}); "
                    f"lower --lr or add --clip-grad if this goes on")
        return None
