"""Files shipped with the package: the demo checkpoint, its config and class names, sample images."""
from __future__ import annotations

import os
from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
DEMO_CHECKPOINT = ASSETS_DIR / "demo.pth"
SAMPLES_DIR = ASSETS_DIR / "samples"


def resolve_model_path(model: str | os.PathLike) -> Path:
    """"demo" names the shipped demo checkpoint; anything else is a path."""
    if str(model) == "demo":
        if not DEMO_CHECKPOINT.is_file():
            raise FileNotFoundError(f"the demo model is not installed ({DEMO_CHECKPOINT} is missing)")
        return DEMO_CHECKPOINT
    return Path(model)
