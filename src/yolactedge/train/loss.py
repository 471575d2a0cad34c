"""The YOLACT(-Edge) training loss: box (B), class confidence (C), lincomb mask (M), semantic segmentation (S).

Weights and normalisation follow the original `yolact_edge_config` (inherited from `yolact_base_config`):

* B: Smooth-L1 (beta 1) between predicted and encoded offsets of the positive priors, summed, × bbox_alpha 1.5.
* C: softmax cross-entropy over the positives plus online hard negative mining: per image the 3×num_pos
  negatives with the highest background loss (logsumexp − background logit); neutral priors are excluded.
  Summed, × conf_alpha 1.
* M: per positive (at most `masks_to_train` = 100 per image, chosen at random, the sum scaled back by
  chosen/total), mask = sigmoid(proto @ coefᵀ) at prototype resolution, binary cross-entropy against the GT
  mask (bilinearly downsampled to the prototype size, binarised at 0.5), counted only inside the GT box
  (the original crops with one pixel of padding), summed and divided by the box area in prototype pixels
  (mask_proto_normalize_emulate_roi_pooling). The original then multiplies by proto h·w for the crop and
  divides by proto h·w again, which cancels. × mask_alpha 6.125.
* B, C and M are divided by the number of positives in the whole batch.
* S: binary cross-entropy with logits between the semantic map (on P3) and the per-class union of the GT
  masks downsampled to P3 size (bilinear, binarised at 0.5), summed, divided by h·w of that map and by the batch
  size, × semantic_segmentation_alpha 1.

One deliberate numerical difference: the mask BCE is computed from logits (`binary_cross_entropy_with_logits`)
rather than from clamped sigmoid outputs. It is the same function where sigmoid does not saturate and stays
finite and differentiable where it does. Pixels outside the crop contribute nothing, as in the original
(there the cropped prediction is exactly 0 and the GT is 0 outside its own box).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..model.yolact import TrainOutputs
from .match import CROWD_THRESH, NEG_THRESH, POS_THRESH, center_size, match_batch

# Boxes narrower or shorter than this (normalised) cannot be encoded meaningfully and are dropped.
MIN_BOX_SIDE = 1e-4


def _tensor(value: Any, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(value), device=device).to(dtype)


def prepare_targets(targets: Sequence[Mapping[str, Any]], device: torch.device | str = "cpu") -> list[dict]:
    """Dataset targets (numpy or tensors) → tensors on `device`; degenerate boxes and their masks dropped.

    Each target needs `boxes` [k, 4] normalised x1y1x2y2, `labels` [k] 0-based, `masks` [k, H, W] (0/1) and
    optionally `crowd_boxes` [m, 4].
    """
    device = torch.device(device)
    out = []
    for t in targets:
        boxes = _tensor(t["boxes"], device, torch.float32).reshape(-1, 4)
        labels = _tensor(t["labels"], device, torch.long).reshape(-1)
        masks = _tensor(t["masks"], device, torch.float32)
        if masks.dim() == 2:
            masks = masks[None]
        crowd = t.get("crowd_boxes")
        crowd = _tensor(crowd, device, torch.float32).reshape(-1, 4) if crowd is not None else boxes.new_zeros(0, 4)
        keep = ((boxes[:, 2] - boxes[:, 0]) > MIN_BOX_SIDE) & ((boxes[:, 3] - boxes[:, 1]) > MIN_BOX_SIDE)
        if not bool(keep.all()):
            boxes, labels, masks = boxes[keep], labels[keep], masks[keep]
        out.append({"boxes": boxes, "labels": labels, "masks": masks, "crowd_boxes": crowd})
    return out


def crop_weights(boxes: torch.Tensor, height: int, width: int, padding: int = 1) -> torch.Tensor:
    """[n, 4] normalised point-form boxes → [height, width, n] 0/1 masks of the box, widened by `padding` pixels
    (the original's `crop` on a mask of that size)."""
    def bounds(a: torch.Tensor, b: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = a * size, b * size
        lo, hi = torch.minimum(a, b), torch.maximum(a, b)
        return (lo - padding).clamp(min=0), (hi + padding).clamp(max=size)

    x1, x2 = bounds(boxes[:, 0], boxes[:, 2], width)
    y1, y2 = bounds(boxes[:, 1], boxes[:, 3], height)
    cols = torch.arange(width, device=boxes.device, dtype=boxes.dtype)[None, :, None]
    rows = torch.arange(height, device=boxes.device, dtype=boxes.dtype)[:, None, None]
    inside = (cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2)
    return inside.to(boxes.dtype)


def downsample_masks(masks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[k, H, W] 0/1 → [k, height, width] 0/1: bilinear (align_corners=False), then > 0.5, as the original."""
    if masks.shape[0] == 0:
        return masks.new_zeros(0, height, width)
    if tuple(masks.shape[-2:]) == (height, width):
        return masks.gt(0.5).to(masks.dtype)
    small = F.interpolate(masks[None], (height, width), mode="bilinear", align_corners=False)[0]
    return small.gt(0.5).to(masks.dtype)


class YolactLoss(nn.Module):
    """`loss(outputs: TrainOutputs, targets) -> {"B", "C", "M", "S"}` scalar tensors (sum them to train).

    `num_classes` counts background (as `ModelConfig.num_classes`). Targets are the dataset's dicts, see
    `prepare_targets`. Defaults are the original yolact_edge config's.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        pos_threshold: float = POS_THRESH,
        neg_threshold: float = NEG_THRESH,
        crowd_iou_threshold: float = CROWD_THRESH,
        negpos_ratio: int = 3,
        bbox_alpha: float = 1.5,
        conf_alpha: float = 1.0,
        mask_alpha: float = 6.125,
        semantic_segmentation_alpha: float = 1.0,
        masks_to_train: int = 100,
        crop_padding: int = 1,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.pos_threshold = pos_threshold
        self.neg_threshold = neg_threshold
        self.crowd_iou_threshold = crowd_iou_threshold
        self.negpos_ratio = negpos_ratio
        self.bbox_alpha = bbox_alpha
        self.conf_alpha = conf_alpha
        self.mask_alpha = mask_alpha
        self.semantic_segmentation_alpha = semantic_segmentation_alpha
        self.masks_to_train = masks_to_train
        self.crop_padding = crop_padding

    def forward(self, outputs: TrainOutputs, targets: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        loc, conf, coef, priors, proto, segm = outputs
        if conf.shape[-1] != self.num_classes:
            raise ValueError(f"conf has {conf.shape[-1]} classes, the loss was built for {self.num_classes}")
        if len(targets) != loc.shape[0]:
            raise ValueError(f"{len(targets)} targets for a batch of {loc.shape[0]}")
        targets = prepare_targets(targets, loc.device)
        with torch.no_grad():
            loc_t, conf_t, idx_t = match_batch(
                [t["boxes"] for t in targets], priors.detach(), [t["labels"] for t in targets],
                [t["crowd_boxes"] for t in targets], pos_thresh=self.pos_threshold,
                neg_thresh=self.neg_threshold, crowd_thresh=self.crowd_iou_threshold,
            )
        pos = conf_t > 0
        num_pos = pos.sum().clamp(min=1).to(loc.dtype)

        losses = {
            "B": F.smooth_l1_loss(loc[pos], loc_t[pos], reduction="sum") * self.bbox_alpha / num_pos,
            "C": self.ohem_conf_loss(conf, conf_t, pos) / num_pos,
            "M": self.mask_loss(pos, idx_t, coef, proto, targets) / num_pos,
            "S": self.semantic_segmentation_loss(segm, targets),
        }
        return losses

    def ohem_conf_loss(self, conf: torch.Tensor, conf_t: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Summed cross-entropy over positives and the hardest `negpos_ratio`× negatives of each image."""
        n, a, k = conf.shape
        with torch.no_grad():
            background_loss = torch.logsumexp(conf, dim=-1) - conf[..., 0]
            background_loss = background_loss.masked_fill(pos | (conf_t < 0), 0.0)
            order = background_loss.argsort(dim=1, descending=True)
            rank = order.argsort(dim=1)
            num_neg = (self.negpos_ratio * pos.sum(dim=1, keepdim=True)).clamp(max=a - 1)
            neg = (rank < num_neg) & ~pos & (conf_t >= 0)
            keep = pos | neg
        if not bool(keep.any()):
            return conf.sum() * 0.0
        return F.cross_entropy(conf[keep], conf_t[keep], reduction="sum") * self.conf_alpha

    def mask_loss(
        self, pos: torch.Tensor, idx_t: torch.Tensor, coef: torch.Tensor, proto: torch.Tensor, targets: list[dict]
    ) -> torch.Tensor:
        """Summed over positives of (box-normalised BCE) × mask_alpha; the caller divides by the positives."""
        _, mask_h, mask_w, _ = proto.shape
        total = proto.sum() * 0.0
        for i, target in enumerate(targets):
            cur = pos[i].nonzero(as_tuple=True)[0]
            if cur.numel() == 0:
                continue
            gt_index = idx_t[i, cur]
            if cur.numel() > self.masks_to_train:
                select = torch.randperm(cur.numel(), device=cur.device)[: self.masks_to_train]
                cur, gt_index = cur[select], gt_index[select]
                scale = pos[i].sum().item() / self.masks_to_train
            else:
                scale = 1.0
            with torch.no_grad():
                small = downsample_masks(target["masks"], mask_h, mask_w)  # [k, h, w]
                mask_t = small[gt_index].permute(1, 2, 0)  # [h, w, n]
                boxes = target["boxes"][gt_index]
                weights = crop_weights(boxes, mask_h, mask_w, self.crop_padding)
                size = center_size(boxes)
                area = (size[:, 2] * mask_w) * (size[:, 3] * mask_h)
            logits = proto[i] @ coef[i, cur].t()  # [h, w, n]
            bce = F.binary_cross_entropy_with_logits(logits, mask_t, reduction="none") * weights
            total = total + (bce.sum(dim=(0, 1)) / area).sum() * scale
        return total * self.mask_alpha

    def semantic_segmentation_loss(self, segm: torch.Tensor, targets: list[dict]) -> torch.Tensor:
        n, classes, h, w = segm.shape
        with torch.no_grad():
            segm_t = torch.zeros_like(segm)
            for i, target in enumerate(targets):
                if target["labels"].numel() == 0:
                    continue
                small = downsample_masks(target["masks"], h, w)
                for c in target["labels"].unique().tolist():
                    segm_t[i, c] = small[target["labels"] == c].amax(dim=0)
        loss = F.binary_cross_entropy_with_logits(segm, segm_t, reduction="sum")
        return loss / h / w * self.semantic_segmentation_alpha / n
