"""Box geometry and prior matching for training, following the original YOLACT(-Edge) rules.

Conventions: boxes are normalised to [0, 1]; ground truth is point form (x1, y1, x2, y2); priors are centre
form (cx, cy, w, h) as `YolactEdge.forward_train` returns them. Box regression targets use the variances of
`model.priors.VARIANCES`, so `decode_boxes(encode(gt, priors)[None], priors)[0] == gt`.

Matching (`match`), per image:

* every prior takes the ground-truth box it overlaps most (IoU against the prior's point form);
* every ground-truth box is additionally given its single best prior, forced positive, in order of decreasing
  best overlap so that two boxes never claim the same prior;
* IoU >= `pos_thresh` (0.5) → positive, class label + 1; IoU < `neg_thresh` (0.4) → background (0);
  in between → neutral (-1, ignored by the class loss);
* a prior that is not positive and whose intersection with a crowd box covers more than `crowd_thresh` (0.7)
  of the prior's own area becomes neutral.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from ..model.priors import VARIANCES

POS_THRESH = 0.5
NEG_THRESH = 0.4
CROWD_THRESH = 0.7


class MatchResult(NamedTuple):
    loc_t: torch.Tensor  # [..., A, 4] encoded box targets (meaningful for positives only)
    conf_t: torch.Tensor  # [..., A] int64: -1 neutral, 0 background, c+1 for 0-based class c
    idx_t: torch.Tensor  # [..., A] int64 index of the matched ground-truth box (0 where there is none)


def point_form(boxes: torch.Tensor) -> torch.Tensor:
    """cx, cy, w, h → x1, y1, x2, y2 (any leading dimensions)."""
    half = boxes[..., 2:] / 2
    return torch.cat((boxes[..., :2] - half, boxes[..., :2] + half), dim=-1)


def center_size(boxes: torch.Tensor) -> torch.Tensor:
    """x1, y1, x2, y2 → cx, cy, w, h (any leading dimensions)."""
    return torch.cat(((boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]), dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def intersection(box_a: torch.Tensor, box_b: torch.Tensor) -> torch.Tensor:
    """[..., A, 4] x [..., B, 4] point form → [..., A, B] intersection areas."""
    lo = torch.maximum(box_a[..., :, None, :2], box_b[..., None, :, :2])
    hi = torch.minimum(box_a[..., :, None, 2:], box_b[..., None, :, 2:])
    wh = (hi - lo).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def jaccard(box_a: torch.Tensor, box_b: torch.Tensor, *, iscrowd: bool = False) -> torch.Tensor:
    """IoU of point-form boxes: [..., A, 4] x [..., B, 4] → [..., A, B] (a leading batch dimension is allowed).

    With `iscrowd=True` (crowd boxes passed as `box_b`) it is intersection over the area of `box_a`, the rule the
    original uses to neutralise priors that sit inside a crowd region. A zero union gives 0, never NaN.
    """
    inter = intersection(box_a, box_b)
    area_a = box_area(box_a)[..., :, None]
    if iscrowd:
        denom = area_a.expand_as(inter)
    else:
        denom = area_a + box_area(box_b)[..., None, :] - inter
    return torch.where(denom > 0, inter / denom.clamp(min=torch.finfo(inter.dtype).tiny), torch.zeros_like(inter))


def encode(matched: torch.Tensor, priors: torch.Tensor, variances: Sequence[float] = VARIANCES) -> torch.Tensor:
    """Point-form boxes [..., A, 4] matched to priors [A, 4] (cx, cy, w, h) → regression targets [..., A, 4].

    The exact inverse of `yolactedge.model.decode_boxes`. Widths and heights are floored at 1e-6 so that a
    degenerate box gives a large but finite target instead of -inf.
    """
    centres = (matched[..., :2] + matched[..., 2:]) / 2
    sizes = (matched[..., 2:] - matched[..., :2]).clamp(min=1e-6)
    d_centre = (centres - priors[..., :2]) / (variances[0] * priors[..., 2:])
    d_size = torch.log(sizes / priors[..., 2:]) / variances[1]
    return torch.cat((d_centre, d_size), dim=-1)


def match(
    truths: torch.Tensor,
    priors: torch.Tensor,
    labels: torch.Tensor,
    crowd_boxes: torch.Tensor | None = None,
    *,
    pos_thresh: float = POS_THRESH,
    neg_thresh: float = NEG_THRESH,
    crowd_thresh: float = CROWD_THRESH,
) -> MatchResult:
    """Match one image's ground truth to the priors.

    truths [k, 4] point form, priors [A, 4] centre form, labels [k] 0-based classes, crowd_boxes [m, 4] or
    None. With no ground truth every prior is background (except those neutralised by crowds).
    `crowd_thresh >= 1` switches crowd handling off, as in the original.
    """
    num_priors = priors.shape[0]
    device = priors.device
    prior_boxes = point_form(priors)
    if truths.shape[0] == 0:
        conf = torch.zeros(num_priors, dtype=torch.long, device=device)
        idx = torch.zeros(num_priors, dtype=torch.long, device=device)
        loc = torch.zeros(num_priors, 4, dtype=priors.dtype, device=device)
    else:
        overlaps = jaccard(truths.to(priors.dtype), prior_boxes)  # [k, A]
        best_truth_overlap, idx = overlaps.max(dim=0)
        # Force each ground truth onto its best prior, strongest pair first, never sharing a prior.
        work = overlaps.clone()
        for _ in range(work.shape[0]):
            best_prior_overlap, best_prior = work.max(dim=1)
            j = int(best_prior_overlap.argmax())
            i = int(best_prior[j])
            work[:, i] = -1
            work[j, :] = -1
            best_truth_overlap[i] = 2.0
            idx[i] = j
        conf = labels.to(device=device, dtype=torch.long)[idx] + 1
        conf[best_truth_overlap < pos_thresh] = -1
        conf[best_truth_overlap < neg_thresh] = 0
        loc = encode(truths.to(priors.dtype)[idx], priors)
    if crowd_boxes is not None and crowd_boxes.shape[0] > 0 and crowd_thresh < 1:
        crowd_overlap = jaccard(prior_boxes, crowd_boxes.to(priors.dtype), iscrowd=True).max(dim=1).values
        conf[(conf <= 0) & (crowd_overlap > crowd_thresh)] = -1
    return MatchResult(loc, conf, idx)


def match_batch(
    truths: Sequence[torch.Tensor],
    priors: torch.Tensor,
    labels: Sequence[torch.Tensor],
    crowd_boxes: Sequence[torch.Tensor | None] | None = None,
    **thresholds: float,
) -> MatchResult:
    """`match` for every image of a batch, stacked: loc_t [N, A, 4], conf_t [N, A], idx_t [N, A]."""
    crowd_boxes = crowd_boxes if crowd_boxes is not None else [None] * len(truths)
    results = [match(t, priors, l, c, **thresholds) for t, l, c in zip(truths, labels, crowd_boxes)]
    if not results:
        a = priors.shape[0]
        return MatchResult(priors.new_zeros(0, a, 4), priors.new_zeros(0, a, dtype=torch.long),
                           priors.new_zeros(0, a, dtype=torch.long))
    return MatchResult(*(torch.stack(parts) for parts in zip(*results)))
