"""The tiny model the export tests convert (kept small so a TFLite conversion takes seconds)."""
from __future__ import annotations

from yolactedge import build_model
from yolactedge.model.build import randomize_batchnorm

SIZE = 96


def tiny_model(seed: int = 0):
    """The demo network at 96x96 with randomised BatchNorm, so that every output varies."""
    return randomize_batchnorm(build_model("yolact_edge_demo", input_size=SIZE), seed).eval()
