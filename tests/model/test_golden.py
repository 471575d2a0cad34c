"""Our MobileNetV2 model reproduces outputs recorded from the original implementation (haotian-liu/yolact_edge).

tests/expect/mobilenetv2_golden.npz was produced by the original code (commit 873fceb3) on the state_dict and
input built by tests/model/golden_state.py; its `description` entry says how.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from golden_state import golden_input, golden_state_dict
from yolactedge import build_model

GOLDEN = Path(__file__).parents[1] / "expect" / "mobilenetv2_golden.npz"


def test_outputs_match_the_original_implementation():
    model = build_model("yolact_edge_mobilenetv2")
    model.load_state_dict(golden_state_dict(model))
    with torch.no_grad():
        boxes, scores, masks, proto = (t.numpy() for t in model(golden_input()))
    golden = np.load(GOLDEN, allow_pickle=False)
    anchors, cells = golden["anchor_idx"], golden["proto_idx"]
    ours = {
        "boxes": boxes[0, anchors],
        "scores": scores[0][:, anchors],
        "masks": masks[0, anchors],
        "proto": proto[0][np.ix_(cells, cells)],
    }
    for name, value in ours.items():
        reference = golden[name]
        relative = np.abs(value - reference).max() / np.abs(reference).max()
        assert relative <= 1e-4, f"{name}: relative error {relative:.2e}"
    assert golden["scores"].max() > 0.3  # the recorded outputs are not flat
