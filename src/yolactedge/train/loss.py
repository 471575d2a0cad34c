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

from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence

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

    Each target needs `boxes` [k, 4] normalised x1y1x2y2, `labels` [k] 0-based, `masks` [k, H, W] (0/1, kept
    as uint8: a quarter of the bytes to move) and optionally `crowd_boxes` [m, 4].
    """
    device = torch.device(device)
    out = []
    for t in targets:
        boxes = _tensor(t["boxes"], device, torch.float32).reshape(-1, 4)
        labels = _tensor(t["labels"], device, torch.long).reshape(-1)
        masks = t["masks"] if isinstance(t["masks"], torch.Tensor) else torch.as_tensor(np.asarray(t["masks"]))
        masks = (masks if masks.dtype in (torch.uint8, torch.bool) else masks.gt(0.5)).to(device, torch.uint8)
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
    """[k, H, W] 0/1 → [k, height, width] float32 0/1: bilinear (align_corners=False), then > 0.5, as the original."""
    if masks.shape[0] == 0:
        return masks.new_zeros(0, height, width, dtype=torch.float32)
    masks = masks.float()
    if tuple(masks.shape[-2:]) == (height, width):
        return masks.gt(0.5).float()
    small = F.interpolate(masks[None], (height, width), mode="bilinear", align_corners=False)[0]
    return small.gt(0.5).float()


class GroundTruth(NamedTuple):
    """A batch's ground truth concatenated over its images (K instances), on the loss's device."""

    boxes: torch.Tensor  # [K, 4] normalised x1y1x2y2
    labels: torch.Tensor  # [K] int64, 0-based
    masks: torch.Tensor  # [K, H, W] uint8 0/1
    image: torch.Tensor  # [K] int64: the image each instance belongs to
    offsets: list[int]  # index of each image's first instance

    @classmethod
    def gather(cls, targets: Sequence[Mapping[str, torch.Tensor]], device: torch.device) -> GroundTruth:
        """From `prepare_targets` output: one copy per field, not one per image (each copy to a GPU waits for it)."""
        counts = [len(t["labels"]) for t in targets]
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist() if counts else []
        image = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts, dtype=torch.long))
        masks = [t["masks"] for t in targets if len(t["masks"])]  # an empty image's masks may have any H, W
        masks = torch.cat(masks) if masks else torch.zeros(0, 1, 1, dtype=torch.uint8)
        boxes = torch.cat([t["boxes"] for t in targets])
        labels = torch.cat([t["labels"] for t in targets])
        return cls(boxes.to(device), labels.to(device), masks.to(device), image.to(device), offsets)


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
        # Matching runs where the targets are (the host): its per-box loop would otherwise wait on the GPU.
        device = loc.device
        host = prepare_targets(targets, "cpu")
        with torch.no_grad():
            matched = match_batch(
                [t["boxes"] for t in host], priors.detach().cpu(), [t["labels"] for t in host],
                [t["crowd_boxes"] for t in host], pos_thresh=self.pos_threshold,
                neg_thresh=self.neg_threshold, crowd_thresh=self.crowd_iou_threshold,
            )
        loc_t, conf_t = matched.loc_t.to(device), matched.conf_t.to(device)
        pos = conf_t > 0
        num_pos = pos.sum().clamp(min=1).to(loc.dtype)
        truth = GroundTruth.gather(host, device)

        losses = {
            "B": F.smooth_l1_loss(loc[pos], loc_t[pos], reduction="sum") * self.bbox_alpha / num_pos,
            "C": self.ohem_conf_loss(conf, conf_t, pos) / num_pos,
            "M": self.mask_loss(matched.conf_t > 0, matched.idx_t, coef, proto, truth) / num_pos,
            "S": self.semantic_segmentation_loss(segm, truth),
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
        self, pos: torch.Tensor, idx_t: torch.Tensor, coef: torch.Tensor, proto: torch.Tensor, truth: GroundTruth
    ) -> torch.Tensor:
        """Summed over positives of (box-normalised BCE) × mask_alpha; the caller divides by the positives.

        pos, idx_t: [N, A] on the host (which positives train is decided there); the images' chosen positives
        are padded to one [R, m] table so that the whole batch is a few large operations.
        """
        _, mask_h, mask_w, _ = proto.shape
        images, chosen, scales = [], [], []
        for i in range(pos.shape[0]):
            cur = pos[i].nonzero(as_tuple=True)[0]
            if cur.numel() == 0:
                continue
            scale = 1.0
            if cur.numel() > self.masks_to_train:
                scale = cur.numel() / self.masks_to_train
                cur = cur[torch.randperm(cur.numel())[: self.masks_to_train]]
            images.append(i)
            chosen.append(cur)
            scales.append(scale)
        if not images:
            return proto.sum() * 0.0
        prior_index = pad_sequence(chosen, batch_first=True)
        truth_index = pad_sequence([idx_t[i, cur] + truth.offsets[i] for i, cur in zip(images, chosen)],
                                   batch_first=True)
        valid = pad_sequence([torch.ones(len(cur), dtype=torch.bool) for cur in chosen], batch_first=True)
        device = proto.device
        rows = torch.tensor(images, device=device)
        prior_index, truth_index, valid = prior_index.to(device), truth_index.to(device), valid.to(device)
        with torch.no_grad():
            mask_t = downsample_masks(truth.masks, mask_h, mask_w)[truth_index].permute(0, 2, 3, 1)  # [R, h, w, m]
            boxes = truth.boxes[truth_index]  # [R, m, 4]
            weights = crop_weights(boxes.reshape(-1, 4), mask_h, mask_w, self.crop_padding)
            weights = weights.reshape(mask_h, mask_w, *boxes.shape[:2]).permute(2, 0, 1, 3)
            size = center_size(boxes)
            area = (size[..., 2] * mask_w) * (size[..., 3] * mask_h)  # [R, m]
        logits = proto[rows] @ coef[rows[:, None], prior_index].transpose(1, 2)[:, None]  # [R, h, w, m]
        bce = F.binary_cross_entropy_with_logits(logits, mask_t, reduction="none") * weights
        per_mask = torch.where(valid, bce.sum(dim=(1, 2)) / area, torch.zeros_like(area))
        scale = torch.tensor(scales, device=device, dtype=per_mask.dtype)
        return (per_mask.sum(dim=1) * scale).sum() * self.mask_alpha

    def semantic_segmentation_loss(self, segm: torch.Tensor, truth: GroundTruth) -> torch.Tensor:
        n, classes, h, w = segm.shape
        with torch.no_grad():
            segm_t = segm.new_zeros(n * classes, h * w)
            if truth.labels.numel():  # per image and class, the union of that class's masks
                small = downsample_masks(truth.masks, h, w).to(segm.dtype).reshape(-1, h * w)
                rows = (truth.image * classes + truth.labels)[:, None].expand(-1, h * w)
                segm_t.scatter_reduce_(0, rows, small, "amax")
            segm_t = segm_t.view(n, classes, h, w)
        loss = F.binary_cross_entropy_with_logits(segm, segm_t, reduction="sum")
        return loss / h / w * self.semantic_segmentation_alpha / n
