"""Official checkpoint layouts (tests/model/official_keys, copied from the original's key lists) as state_dicts."""
from __future__ import annotations

import json
from pathlib import Path

import torch

KEYS_DIR = Path(__file__).parent / "official_keys"
OFFICIAL = {
    "keys_yolact_edge_mobilenetv2_config.json": ("mobilenetv2", 81),
    "keys_yolact_edge_resnet50_config.json": ("resnet50", 81),
    "keys_yolact_edge_config.json": ("resnet101", 81),
    "keys_yolact_edge_vid_config.json": ("resnet101", 41),
    "keys_yolact_edge_vid_resnet50_config.json": ("resnet50", 41),
}


def official_state_dict(keys_file: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state_dict with exactly the official keys and shapes, filled with seeded values."""
    layout = json.loads((KEYS_DIR / keys_file).read_text())
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(1000, dtype=torch.long)
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            out[key] = torch.randn(shape, generator=gen) * 0.05
    return out
