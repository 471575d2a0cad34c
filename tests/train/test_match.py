"""Prior matching, IoU and box encoding against hand-computed cases."""
import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from yolactedge.model import decode_boxes
from yolactedge.model.priors import make_priors
from yolactedge.train.match import center_size, encode, jaccard, match, match_batch, point_form


def square(cx, cy, side):
    return [cx, cy, side, side]


def test_jaccard_known_values():
    a = torch.tensor([[0.0, 0.0, 0.2, 0.2]])
    b = torch.tensor([[0.0, 0.0, 0.2, 0.2], [0.1, 0.0, 0.3, 0.2], [0.5, 0.5, 0.6, 0.6], [0.0, 0.0, 0.1, 0.1]])
    iou = jaccard(a, b)
    assert iou.shape == (1, 4)
    np.testing.assert_allclose(iou[0].numpy(), [1.0, 0.02 / 0.06, 0.0, 0.25], rtol=1e-5)
    # Crowd rule: intersection over the area of the first argument (the prior).
    crowd = jaccard(b, a, iscrowd=True)
    np.testing.assert_allclose(crowd[:, 0].numpy(), [1.0, 0.5, 0.0, 1.0], rtol=1e-5)
    # Batched and degenerate inputs.
    batched = jaccard(a[None].repeat(3, 1, 1), b[None].repeat(3, 1, 1))
    assert batched.shape == (3, 1, 4) and torch.allclose(batched[1], iou)
    zero = torch.zeros(1, 4)
    assert jaccard(zero, zero).item() == 0.0


@settings(max_examples=50, deadline=None)
@given(
    st.floats(0.05, 0.95), st.floats(0.05, 0.95), st.floats(0.01, 0.9), st.floats(0.01, 0.9),
    st.floats(0.05, 0.95), st.floats(0.05, 0.95), st.floats(0.02, 0.8),
)
def test_encode_is_inverse_of_decode(cx, cy, w, h, pcx, pcy, side):
    gt = point_form(torch.tensor([[cx, cy, w, h]], dtype=torch.float64))
    prior = torch.tensor([square(pcx, pcy, side)], dtype=torch.float64)
    loc = encode(gt, prior)
    back = decode_boxes(loc[None], prior)[0]
    torch.testing.assert_close(back, gt, rtol=1e-9, atol=1e-9)
    # and the other way round
    loc2 = torch.tensor([[0.3, -1.2, 0.5, -0.7]], dtype=torch.float64)
    torch.testing.assert_close(encode(decode_boxes(loc2[None], prior)[0], prior), loc2)


def test_point_form_center_size_roundtrip():
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.1, 0.9, 0.05, 0.1]])
    torch.testing.assert_close(center_size(point_form(boxes)), boxes)


def shifted_iou(d):
    """IoU of two unit-height squares of side 1 shifted horizontally by d (as a fraction of the side)."""
    return (1 - d) / (1 + d)


def shift_for_iou(iou):
    return (1 - iou) / (1 + iou)


def test_thresholds_positive_neutral_negative():
    side = 0.2
    gt = torch.tensor([[0.3, 0.3, 0.5, 0.5]])  # centre 0.4, side 0.2
    ious = [1.0, 0.55, 0.45, 0.35, 0.0]
    priors = torch.tensor([square(0.4 + shift_for_iou(i) * side if i > 0 else 0.9, 0.4, side) for i in ious])
    np.testing.assert_allclose(jaccard(gt, point_form(priors))[0].numpy(), ious, atol=1e-5)
    loc_t, conf_t, idx_t = match(gt, priors, torch.tensor([4]))
    assert conf_t.tolist() == [5, 5, -1, 0, 0]
    assert idx_t[:2].tolist() == [0, 0]
    torch.testing.assert_close(loc_t[0], torch.zeros(4), atol=1e-5, rtol=0)
    # custom thresholds
    _, conf_t, _ = match(gt, priors, torch.tensor([4]), pos_thresh=0.4, neg_thresh=0.3)
    assert conf_t.tolist() == [5, 5, 5, -1, 0]


def test_each_gt_gets_its_best_prior_even_below_threshold():
    priors = torch.tensor([square(0.2, 0.2, 0.1), square(0.8, 0.8, 0.1)])
    gt = torch.tensor([[0.1, 0.1, 0.5, 0.5]])  # IoU with prior 0 = 0.01/0.16 < 0.4
    _, conf_t, idx_t = match(gt, priors, torch.tensor([0]))
    assert conf_t.tolist() == [1, 0]
    assert idx_t[0].item() == 0


def test_two_gts_never_share_a_forced_prior():
    # Both boxes' best prior is prior 0; the stronger pair wins it, the other takes its next best.
    priors = torch.tensor([square(0.5, 0.5, 0.2), square(0.5, 0.7, 0.2), square(0.9, 0.1, 0.05)])
    gt = torch.tensor([[0.4, 0.4, 0.6, 0.6], [0.4, 0.45, 0.6, 0.65]])
    labels = torch.tensor([1, 2])
    overlaps = jaccard(gt, point_form(priors))
    assert overlaps[:, 0].argmax() == 0 and overlaps[1].argmax() == 0
    _, conf_t, idx_t = match(gt, priors, labels)
    assert idx_t[0].item() == 0 and conf_t[0].item() == 2
    assert idx_t[1].item() == 1 and conf_t[1].item() == 3  # forced despite IoU < 0.5
    assert conf_t[2].item() == 0


def test_crowd_neutralises_non_positives_only():
    priors = torch.tensor([square(0.2, 0.2, 0.1), square(0.7, 0.7, 0.1), square(0.75, 0.75, 0.04), square(0.2, 0.8, 0.1)])
    gt = torch.tensor([[0.15, 0.15, 0.25, 0.25]])
    crowd = torch.tensor([[0.6, 0.6, 0.9, 0.9], [0.15, 0.15, 0.26, 0.26]])
    _, conf_t, _ = match(gt, priors, torch.tensor([0]), crowd)
    assert conf_t.tolist() == [1, -1, -1, 0]  # the positive inside a crowd box stays positive
    # a prior only partly inside (0.5 of its area) is not neutralised
    half = torch.tensor([square(0.6, 0.75, 0.1)])
    _, conf_h, _ = match(gt, torch.cat([priors, half]), torch.tensor([0]), crowd)
    assert conf_h[-1].item() == 0
    _, off, _ = match(gt, priors, torch.tensor([0]), crowd, crowd_thresh=1.0)
    assert off.tolist() == [1, 0, 0, 0]


def test_no_ground_truth_is_all_background():
    priors = torch.from_numpy(make_priors([(4, 4), (2, 2)], (8, 16), (1.0,), 32))
    loc_t, conf_t, idx_t = match(torch.zeros(0, 4), priors, torch.zeros(0, dtype=torch.long))
    assert conf_t.eq(0).all() and loc_t.eq(0).all() and idx_t.eq(0).all()
    _, conf_c, _ = match(torch.zeros(0, 4), priors, torch.zeros(0, dtype=torch.long), torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
    assert conf_c.eq(-1).all()


def test_match_batch_stacks():
    priors = torch.from_numpy(make_priors([(8, 8), (4, 4)], (8, 16), (1.0, 0.5, 2.0), 64))
    truths = [torch.tensor([[0.1, 0.1, 0.4, 0.3]]), torch.zeros(0, 4), torch.tensor([[0.5, 0.5, 0.9, 0.9], [0.0, 0.6, 0.2, 1.0]])]
    labels = [torch.tensor([2]), torch.zeros(0, dtype=torch.long), torch.tensor([0, 1])]
    loc_t, conf_t, idx_t = match_batch(truths, priors, labels)
    a = priors.shape[0]
    assert loc_t.shape == (3, a, 4) and conf_t.shape == (3, a) and idx_t.shape == (3, a)
    assert set(conf_t[0].unique().tolist()) <= {-1, 0, 3} and (conf_t[0] == 3).any()
    assert conf_t[1].eq(0).all()
    assert (conf_t[2] == 1).any() and (conf_t[2] == 2).any()
    for i in range(3):
        single = match(truths[i], priors, labels[i])
        assert torch.equal(single.conf_t, conf_t[i])
    # positives decode back to their ground truth
    pos = conf_t[2] > 0
    decoded = decode_boxes(loc_t[2][pos][None], priors[pos])[0]
    torch.testing.assert_close(decoded, truths[2][idx_t[2][pos]], atol=1e-5, rtol=1e-5)
    assert math.isfinite(loc_t.abs().max().item())
