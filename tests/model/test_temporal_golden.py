"""Our video model reproduces a key frame and a warped frame recorded from the original implementation.

tests/expect/vid_resnet50_golden.npz was produced by the original code (commit 873fceb3, yolact_edge_vid_resnet50
config, CPU) on the state_dict and frames built by tests/model/golden_state.py; its `description` entry says how.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from golden_state import golden_input, golden_next_frame, golden_state_dict
from yolactedge import build_model

GOLDEN = Path(__file__).parents[1] / "expect" / "vid_resnet50_golden.npz"


def test_key_and_warped_frames_match_the_original_implementation():
    model = build_model("yolact_edge_vid_resnet50")
    model.load_state_dict(golden_state_dict(model))
    with torch.no_grad():
        key_outputs, memory = model.key_frame(golden_input())
        warped_outputs = model.warped_frame(golden_next_frame(), memory)
    golden = np.load(GOLDEN, allow_pickle=False)
    anchors, cells = golden["anchor_idx"], golden["proto_idx"]
    for frame, outputs in (("key", key_outputs), ("warped", warped_outputs)):
        boxes, scores, masks, proto = (t[0].numpy() for t in outputs)
        ours = {"boxes": boxes[anchors], "scores": scores[:, anchors], "masks": masks[anchors],
                "proto": proto[np.ix_(cells, cells)]}
        for name, value in ours.items():
            reference = golden[f"{frame}_{name}"]
            relative = np.abs(value - reference).max() / np.abs(reference).max()
            assert relative <= 1e-4, f"{frame} {name}: relative error {relative:.2e}"
    # The warped frame is not a copy of the key frame: the flow, SPA and the new lateral changed it.
    assert np.abs(golden["warped_proto"] - golden["key_proto"]).max() > 1
