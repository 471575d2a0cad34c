"""The separable (NPU-placeable) form of the FPN's bilinear upsampling gives PyTorch's values."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from yolactedge import build_model
from yolactedge.model.upsample import upsample_bilinear


@pytest.mark.parametrize(("size_in", "size_out"), [((18, 18), (35, 35)), ((35, 35), (69, 69)), ((4, 7), (7, 13)),
                                                   ((16, 16), (32, 32)), ((9, 5), (4, 3))])
def test_separable_form_matches_interpolate(size_in, size_out):
    x = torch.randn(2, 5, *size_in, generator=torch.Generator().manual_seed(0))
    reference = F.interpolate(x, size=size_out, mode="bilinear", align_corners=False)
    separable = upsample_bilinear(x, size_out, separable=True)
    assert separable.shape == reference.shape
    assert float((separable - reference).abs().max()) < 1e-5


def test_exact_2x_keeps_the_resize():
    """An exact 2x resize is what NPUs run natively: the separable form leaves it as it is (no extra ops)."""
    x = torch.randn(1, 3, 6, 8)
    assert torch.equal(upsample_bilinear(x, (12, 16), separable=True),
                       F.interpolate(x, size=(12, 16), mode="bilinear", align_corners=False))


def test_model_outputs_do_not_change_with_the_separable_form():
    model = build_model("yolact_edge_demo", input_size=100).eval()  # FPN 4 → 7 → 13: not 2x
    image = torch.rand(1, 3, 100, 100, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        before = model(image)
        model.fpn_phase_1.separable_upsampling = True
        after = model(image)
    for a, b in zip(before, after):
        assert float((a - b).abs().max()) <= 1e-5 * max(float(a.abs().max()), 1.0)
