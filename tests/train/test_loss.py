"""YolactLoss: exact normalisation on hand-built outputs, near-zero loss for a perfect prediction."""
import math

import numpy as np
import pytest
import torch

from yolactedge.model.priors import make_priors
from yolactedge.model.yolact import TrainOutputs
from yolactedge.train.loss import YolactLoss, crop_weights, downsample_masks
from yolactedge.train.match import match_batch

S = 64  # image size
NUM_CLASSES = 4  # with background
PROTO = 16
SEG = 8


def make_targets():
    masks0 = np.zeros((2, S, S), np.uint8)
    masks0[0, 16:48, 16:48] = 1  # box 0.25..0.75
    masks0[1, 0:16, 40:64] = 1
    masks0[1, 4:12, 44:60] = 0  # a hole: the mask is not the box
    t0 = {
        "boxes": np.array([[0.25, 0.25, 0.75, 0.75], [40 / 64, 0.0, 1.0, 0.25]], np.float32),
        "labels": np.array([0, 2]),
        "masks": masks0,
        "crowd_boxes": np.zeros((0, 4), np.float32),
    }
    masks1 = np.zeros((1, S, S), np.uint8)
    masks1[0, 32:64, 0:32] = 1
    t1 = {"boxes": np.array([[0.0, 0.5, 0.5, 1.0]], np.float32), "labels": np.array([1]), "masks": masks1}
    return [t0, t1]


def priors():
    return torch.from_numpy(make_priors([(8, 8), (4, 4), (2, 2)], (12, 24, 48), (1.0, 0.5, 2.0), S))


def matched(targets, pri):
    return match_batch([torch.from_numpy(t["boxes"]) for t in targets], pri,
                       [torch.from_numpy(t["labels"]) for t in targets])


def perfect_outputs(targets, pri, confidence=20.0, mask_logit=12.0):
    """Outputs that reproduce the ground truth: loc = encode(gt), confident classes, exact masks."""
    n, a = len(targets), pri.shape[0]
    loc_t, conf_t, idx_t = matched(targets, pri)
    conf = torch.full((n, a, NUM_CLASSES), -confidence)
    conf.scatter_(2, conf_t.clamp(min=0)[..., None], confidence)
    # prototypes: one channel per GT mask (scaled), one constant channel; coefficients select mask j, minus bias.
    kmax = max(len(t["labels"]) for t in targets)
    proto = torch.zeros(n, PROTO, PROTO, kmax + 1)
    coef = torch.zeros(n, a, kmax + 1)
    segm = torch.full((n, NUM_CLASSES - 1, SEG, SEG), -confidence)
    for i, t in enumerate(targets):
        m = torch.from_numpy(t["masks"]).float()
        proto[i, :, :, : len(m)] = downsample_masks(m, PROTO, PROTO).permute(1, 2, 0) * 2 * mask_logit
        proto[i, :, :, kmax] = mask_logit
        coef[i, torch.arange(a), idx_t[i]] = 1.0
        coef[i, :, kmax] = -1.0
        small = downsample_masks(m, SEG, SEG)
        for j, c in enumerate(t["labels"]):
            segm[i, c][small[j] > 0] = confidence
    return TrainOutputs(loc_t.clone(), conf, coef, pri, proto, segm)


def total(losses):
    return sum(v.item() for v in losses.values())


def test_perfect_prediction_is_near_zero():
    targets, pri = make_targets(), priors()
    out = perfect_outputs(targets, pri)
    losses = YolactLoss(NUM_CLASSES)(out, targets)
    assert set(losses) == {"B", "C", "M", "S"}
    assert losses["B"].item() < 1e-8
    assert losses["M"].item() < 1e-3
    assert losses["C"].item() < 1e-6
    assert losses["S"].item() < 1e-6


def test_worse_predictions_cost_more():
    targets, pri = make_targets(), priors()
    loss_fn = YolactLoss(NUM_CLASSES)
    good = loss_fn(perfect_outputs(targets, pri), targets)
    out = perfect_outputs(targets, pri)
    shifted = out._replace(loc=out.loc + torch.tensor([0.5, 0.0, 0.0, 0.0]))
    assert loss_fn(shifted, targets)["B"].item() > 0.05
    wrong_mask = out._replace(coef=-out.coef)
    assert loss_fn(wrong_mask, targets)["M"].item() > 10.0
    assert loss_fn(out._replace(conf=-out.conf), targets)["C"].item() > 10.0
    assert loss_fn(out._replace(segm=-out.segm), targets)["S"].item() > 10.0
    # an imperfect mask (softer logits) is in between
    soft = perfect_outputs(targets, pri, mask_logit=1.0)
    assert good["M"].item() < loss_fn(soft, targets)["M"].item() < loss_fn(wrong_mask, targets)["M"].item()


def neutral_outputs(targets, pri, loc_offset=1.0):
    """Zero logits everywhere, loc off by `loc_offset` from the target: every term has a closed form."""
    n, a = len(targets), pri.shape[0]
    loc_t, _, _ = matched(targets, pri)
    return TrainOutputs(
        loc_t + loc_offset, torch.zeros(n, a, NUM_CLASSES), torch.zeros(n, a, 3), pri,
        torch.zeros(n, PROTO, PROTO, 3), torch.zeros(n, NUM_CLASSES - 1, SEG, SEG),
    )


def test_normalisation_matches_the_original_formulas():
    targets, pri = make_targets(), priors()
    _, conf_t, idx_t = matched(targets, pri)
    pos = conf_t > 0
    num_pos = pos.sum().item()
    losses = YolactLoss(NUM_CLASSES)(neutral_outputs(targets, pri), targets)
    # B: smooth-L1(1) = 0.5 per coordinate, 4 coordinates, × 1.5, averaged over positives.
    assert losses["B"].item() == pytest.approx(3.0, rel=1e-5)
    # C: uniform logits → log K per selected prior; per image num_pos positives + 3·num_pos negatives.
    selected = sum(min(4 * p, p + int(((conf_t[i] == 0)).sum())) for i, p in enumerate(pos.sum(1).tolist()))
    assert losses["C"].item() == pytest.approx(selected * math.log(NUM_CLASSES) / num_pos, rel=1e-5)
    # M: logits 0 → log 2 per pixel in the crop (box widened by one pixel), over the box area in proto pixels.
    expected_m = 0.0
    for i, t in enumerate(targets):
        for j in idx_t[i][pos[i]].tolist():
            x1, y1, x2, y2 = (t["boxes"][j] * PROTO).tolist()
            crop = (min(x2 + 1, PROTO) - max(x1 - 1, 0)) * (min(y2 + 1, PROTO) - max(y1 - 1, 0))
            expected_m += 6.125 * math.log(2) * crop / ((x2 - x1) * (y2 - y1))
    assert losses["M"].item() == pytest.approx(expected_m / num_pos, rel=1e-5)
    # S: logits 0 → log 2 per element, / (h·w) / batch.
    assert losses["S"].item() == pytest.approx(math.log(2) * (NUM_CLASSES - 1), rel=1e-5)


def test_masks_to_train_cap_rescales_the_sum():
    targets, pri = make_targets(), priors()
    out = neutral_outputs(targets, pri)
    full = YolactLoss(NUM_CLASSES)(out, targets)["M"].item()
    # Only one GT per image → every positive has the same loss, so a random subset scaled up is exact.
    one = [targets[1], targets[1]]
    out1 = neutral_outputs(one, pri)
    torch.manual_seed(0)
    capped = YolactLoss(NUM_CLASSES, masks_to_train=1)(out1, one)["M"].item()
    uncapped = YolactLoss(NUM_CLASSES)(out1, one)["M"].item()
    assert capped == pytest.approx(uncapped, rel=1e-5)
    assert full > 0


def test_crowd_neutral_priors_leave_the_class_loss():
    targets, pri = make_targets(), priors()
    out = neutral_outputs(targets, pri)
    # Hard negatives: background logit low on every prior.
    conf = out.conf.clone()
    conf[..., 0] = -5.0
    out = out._replace(conf=conf)
    loss_fn = YolactLoss(NUM_CLASSES)
    base = loss_fn(out, targets)["C"].item()
    # A crowd region covering everything (priors reach past the image border): image 0's negatives all
    # become neutral, only its positives (and image 1's terms) remain.
    crowd = [dict(targets[0], crowd_boxes=np.array([[-1.0, -1.0, 2.0, 2.0]], np.float32)), targets[1]]
    with_crowd = loss_fn(out, crowd)["C"].item()
    assert with_crowd < base
    _, conf_t, _ = match_batch([torch.from_numpy(crowd[0]["boxes"])], pri, [torch.from_numpy(crowd[0]["labels"])],
                               [torch.from_numpy(crowd[0]["crowd_boxes"])])
    assert not (conf_t == 0).any()


def test_empty_image_and_degenerate_boxes_are_finite():
    pri = priors()
    empty = {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64), "masks": np.zeros((0, 1, 1), np.uint8)}
    degenerate = {"boxes": np.array([[0.5, 0.5, 0.5, 0.7]], np.float32), "labels": np.array([1]),
                  "masks": np.zeros((1, S, S), np.uint8)}
    out = neutral_outputs([make_targets()[1], make_targets()[1]], pri)
    out = out._replace(loc=torch.zeros_like(out.loc).requires_grad_())
    losses = YolactLoss(NUM_CLASSES)(out, [empty, degenerate])
    assert all(math.isfinite(v.item()) for v in losses.values())
    assert losses["B"].item() == 0.0 and losses["M"].item() == 0.0
    sum(losses.values()).backward()


def test_gradients_flow_to_every_output():
    targets, pri = make_targets(), priors()
    out = neutral_outputs(targets, pri)
    leaves = [t.clone().requires_grad_() for t in (out.loc, out.conf, out.coef, out.proto, out.segm)]
    # non-zero prototypes and coefficients so that neither gradient vanishes
    out = TrainOutputs(leaves[0], leaves[1], leaves[2] + 0.1, pri, leaves[3] + 0.5, leaves[4])
    sum(YolactLoss(NUM_CLASSES)(out, targets).values()).backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in leaves)


def test_crop_weights_and_downsample():
    w = crop_weights(torch.tensor([[0.25, 0.5, 0.5, 1.0]]), 8, 8, padding=0)
    assert w.shape == (8, 8, 1)
    assert w[..., 0].sum().item() == 2 * 4 and w[4:, 2:4, 0].eq(1).all()
    m = torch.zeros(1, 32, 32)
    m[0, :16] = 1
    d = downsample_masks(m, 8, 8)
    assert d[0, :4].eq(1).all() and d[0, 4:].eq(0).all()
