"""Shapes, parameter counts and priors of the PyTorch model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from yolactedge import build_model
from yolactedge.config import get_preset
from yolactedge.model.build import count_macs
from yolactedge.model.priors import make_priors
from yolactedge.model.yolact import decode_boxes


@pytest.mark.parametrize(
    ("preset", "params"),
    [("yolact_edge_mobilenetv2", 9_028_815), ("yolact_edge_resnet50", 31_164_943), ("yolact_edge", 50_157_071)],
)
def test_parameter_counts_match_the_original(preset, params):
    model = build_model(preset)
    assert sum(p.numel() for p in model.parameters()) == params


def test_model_card_shapes_at_550():
    model = build_model("yolact_edge_mobilenetv2")
    with torch.no_grad():
        boxes, scores, masks, proto = model(torch.rand(1, 3, 550, 550) * 255)
    assert boxes.shape == (1, 19248, 4)
    assert scores.shape == (1, 80, 19248)
    assert masks.shape == (1, 19248, 32)
    assert proto.shape == (1, 138, 138, 32)
    assert torch.all(scores >= 0) and torch.all(scores.sum(1) <= 1 + 1e-5)
    assert masks.abs().max() <= 1 and proto.min() >= 0


def test_other_input_size_and_class_count():
    model = build_model("yolact_edge_mobilenetv2", num_classes=4, input_size=320)
    with torch.no_grad():
        boxes, scores, masks, proto = model(torch.rand(2, 3, 320, 320) * 255)
    anchors = 3 * (40 * 40 + 20 * 20 + 10 * 10 + 5 * 5 + 3 * 3)
    assert boxes.shape == (2, anchors, 4)
    assert scores.shape == (2, 3, anchors)
    assert proto.shape == (2, 80, 80, 32)


def test_config_at_input_size_scales_the_anchors_with_the_input():
    demo = get_preset("yolact_edge_demo")
    assert demo.at_input_size(demo.input_size) is demo
    half = demo.at_input_size(160)
    assert half.input_size == 160 and half.pred_scales == (7, 14, 28, 56, 112)
    assert half.replace(input_size=320, pred_scales=demo.pred_scales) == demo
    assert build_model(demo, input_size=160).config == half


def test_train_outputs_carry_what_the_loss_needs():
    model = build_model("yolact_edge_demo", input_size=128)
    out = model.forward_train(torch.rand(2, 3, 128, 128) * 255)
    anchors = out.priors.shape[0]
    assert out.loc.shape == (2, anchors, 4)
    assert out.conf.shape == (2, anchors, 7)
    assert out.coef.shape == (2, anchors, 32)
    assert out.segm.shape == (2, 6, 16, 16)
    assert out.proto.shape == (2, 32, 32, 32)


def test_mobilenetv2_macs():
    # 34.52 G in the original, which also runs the unused layers.7-8 (0.285 G).
    assert count_macs(build_model("yolact_edge_mobilenetv2")) / 1e9 == pytest.approx(34.235, abs=0.001)


def test_priors_by_hand_on_a_2x2_grid():
    priors = make_priors([(2, 2)], (20,), (1.0, 0.5, 2.0), input_size=100)
    side = [0.2, 0.2 * np.sqrt(0.5), 0.2 * np.sqrt(2.0)]
    # Row y outer, then column x, then aspect ratio; anchors are square.
    expected = [[x, y, s, s] for y in (0.25, 0.75) for x in (0.25, 0.75) for s in side]
    np.testing.assert_allclose(priors, np.array(expected, dtype=np.float32), rtol=1e-6)


def test_priors_use_actual_feature_sizes():
    priors = make_priors([(69, 69), (35, 35)], (24, 48), (1.0, 0.5, 2.0), 550)
    assert priors.shape == (3 * (69 * 69 + 35 * 35), 4)
    # The last P4 centre sits half a cell from the edge of a 35-cell map, not of 550/16.
    np.testing.assert_allclose(priors[-1, :2], [34.5 / 35, 34.5 / 35], rtol=1e-6)


def test_decode_with_zero_regression_returns_the_prior():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.1, 0.9, 1.4, 1.4]])
    boxes = decode_boxes(torch.zeros(1, 2, 4), priors)
    expected = torch.tensor([[[0.4, 0.4, 0.6, 0.6], [-0.6, 0.2, 0.8, 1.6]]])  # never clamped
    torch.testing.assert_close(boxes, expected)
    shifted = decode_boxes(torch.tensor([[[1.0, 0.0, 0.0, 0.0]]]), priors[:1])
    torch.testing.assert_close(shifted[0, 0, 0], torch.tensor(0.4 + 0.1 * 0.2))


def test_decoding_level_by_level_gives_the_same_boxes():
    """Per-level decode (what the int8 export needs, each level on its own grid) changes nothing in float."""
    priors = torch.from_numpy(make_priors([(12, 12), (6, 6), (3, 3)], (24, 48, 96), (1.0, 0.5, 2.0), 96))
    counts = [3 * 144, 3 * 36, 3 * 9]
    loc = torch.randn(2, priors.shape[0], 4, generator=torch.Generator().manual_seed(0))
    centres = priors[:, :2] + loc[..., :2] * 0.1 * priors[:, 2:]
    half_sizes = priors[:, 2:] * torch.exp(loc[..., 2:] * 0.2) / 2
    expected = torch.cat((centres - half_sizes, centres + half_sizes), dim=-1)
    torch.testing.assert_close(decode_boxes(loc, priors, counts), expected)
    torch.testing.assert_close(decode_boxes(loc, priors), expected)
