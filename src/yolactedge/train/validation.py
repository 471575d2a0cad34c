"""Validation during training: COCO mAP through the evaluator, or the mean loss on a held-out set, and the
best value so far."""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from .loss import YolactLoss
from .sampling import resolve_data, to_targets

ValFn = Callable[[nn.Module], Mapping[str, float]]


@torch.no_grad()
def validation_loss(model: nn.Module, loader, loss_fn: YolactLoss, device: torch.device,
                    limit: int | None = None) -> dict[str, float]:
    """Mean losses over a validation loader with the model in eval mode (BN running statistics)."""
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    batches = images = 0
    try:
        for batch, targets in loader:
            x = torch.from_numpy(batch).to(device)
            losses = loss_fn(model.forward_train(x), to_targets(targets))
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            batches += 1
            images += x.shape[0]
            if limit is not None and images >= limit:
                break
    finally:
        model.train(was_training)
    out = {f"val_{k}": v / max(batches, 1) for k, v in sums.items()}
    out["val_loss"] = sum(out.values())
    return out


def map_validator(data: str | os.PathLike, limit: int | None = None) -> ValFn:
    """A `val_fn` scoring COCO mask and box mAP on `data` (first `limit` images), the model evaluated as it
    is, through the torch backend with the original protocol."""
    from ..evaluate import PROTOCOL, evaluate
    from ..runtime import Detector

    images, annotations = resolve_data(data)

    def validate(model: nn.Module) -> dict[str, float]:
        result = evaluate(Detector(model, **PROTOCOL), images, annotations, limit=limit, progress=False)
        return {"mask_AP": result.metrics["segm"]["AP"], "box_AP": result.metrics["bbox"]["AP"]}

    return validate


def check_val_classes(val_data: str | os.PathLike, class_names: Sequence[str]) -> None:
    """Validation data must name the training classes in the same order: otherwise every score would be
    measured against the wrong labels, and that would only show after the first validation interval."""
    from ..data import CocoDataset

    image_dir, ann_file = resolve_data(val_data)
    val_names = CocoDataset(image_dir, ann_file, transform=None).class_names
    if list(val_names) != list(class_names):
        raise ValueError(f"--val-data {ann_file}: its {len(val_names)} classes {list(val_names)} differ from "
                         f"the training data's {len(class_names)} {list(class_names)}")


class Validator:
    """Runs one kind of validation and remembers the best value: `val_fn`'s `metric` (default its first key)
    is maximised; without val_fn the mean loss over `loader` is minimised."""

    def __init__(self, *, val_fn: ValFn | None, metric: str | None, loader, loss_fn: YolactLoss,
                 device: torch.device, limit: int | None, best: float | None) -> None:
        self.val_fn, self.metric, self.loader = val_fn, metric, loader
        self.loss_fn, self.device, self.limit = loss_fn, device, limit
        self.best = best

    def run(self, model: nn.Module) -> tuple[dict[str, float], str | None, bool]:
        """(metrics, key of the compared metric, whether it beat the best so far, which it then becomes)."""
        if self.val_fn is not None:
            model.eval()
            try:
                metrics = {k: float(v) for k, v in dict(self.val_fn(model)).items()}
            finally:
                model.train()
            key = self.metric or next(iter(metrics), None)
            value, higher_is_better = (metrics.get(key) if key else None), True
        else:
            metrics = validation_loss(model, self.loader, self.loss_fn, self.device, self.limit)
            key, value, higher_is_better = "val_loss", metrics["val_loss"], False
        improved = value is not None and math.isfinite(value) and (
            self.best is None or (value > self.best if higher_is_better else value < self.best))
        if improved:
            self.best = value
        return metrics, key, improved
