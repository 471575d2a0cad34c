"""The learning-rate schedule and the optimizer it drives.

The original's schedule, sized to the run: the learning rate rises linearly from `warmup_init` (default lr/10,
the original's 1e-4 for 1e-3) to `lr` over `warmup_iters` (default min(500, max_iter/10); the original warms up
for 500 iterations), then is multiplied by `gamma` 0.1 at each of `lr_steps` (fractions of max_iter, default
0.7 and 0.9, the original's coco_base_config proportions 280k/360k of 400k).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class Schedule:
    """Learning rate as a function of the iteration: linear warm-up, then steps of `gamma`."""

    max_iter: int
    lr: float
    warmup_iters: int
    warmup_init: float
    lr_steps: tuple[int, ...]
    gamma: float = 0.1

    @classmethod
    def create(
        cls, max_iter: int, lr: float, *, warmup_iters: int | None = None, warmup_init: float | None = None,
        lr_steps: tuple[float, ...] = (0.7, 0.9), gamma: float = 0.1,
    ) -> Schedule:
        """lr_steps entries <= 1.0 are fractions of max_iter, larger ones absolute iterations."""
        if max_iter < 1:
            raise ValueError(f"the run needs at least one iteration, got {max_iter}")
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        warmup = min(500, max_iter // 10) if warmup_iters is None else int(warmup_iters)
        steps = tuple(sorted(int(round(f * max_iter)) if isinstance(f, float) and f <= 1 else int(f) for f in lr_steps))
        return cls(max_iter, float(lr), max(0, warmup), lr / 10 if warmup_init is None else float(warmup_init), steps, gamma)

    def lr_at(self, iteration: int) -> float:
        if iteration < self.warmup_iters and self.warmup_init < self.lr:
            return self.warmup_init + (self.lr - self.warmup_init) * iteration / self.warmup_iters
        return self.lr * self.gamma ** sum(iteration >= s for s in self.lr_steps)

    def describe(self) -> str:
        return (f"lr {self.lr} (warm-up {self.warmup_iters} from {self.warmup_init:g}, "
                f"×{self.gamma} at {list(self.lr_steps)})")


def make_optimizer(name: str, params, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """SGD as the original trains; AdamW (betas from momentum) converges faster from scratch, which is what a
    model without ImageNet weights on a CPU budget needs."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; use {' or '.join(OPTIMIZERS)}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
