"""Files shipped with the package: the demo checkpoints, their configs and class names, sample images."""
from __future__ import annotations

import os
from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
DEMO_CHECKPOINT = ASSETS_DIR / "demo.pth"
DEMO_VIDEO_CHECKPOINT = ASSETS_DIR / "demo_video.pth"
SAMPLES_DIR = ASSETS_DIR / "samples"
# Names that stand for a shipped checkpoint wherever a model path is taken.
SHIPPED_MODELS = {"demo": DEMO_CHECKPOINT, "demo-video": DEMO_VIDEO_CHECKPOINT}


def is_shipped_name(model: object) -> bool:
    """Whether `model` names a shipped checkpoint ("demo", "demo-video") rather than a path."""
    return isinstance(model, (str, os.PathLike)) and str(model) in SHIPPED_MODELS


def resolve_model_path(model: str | os.PathLike) -> Path:
    """"demo" names the shipped demo checkpoint, "demo-video" its video model; anything else is a path."""
    if is_shipped_name(model):
        path = SHIPPED_MODELS[str(model)]
        if not path.is_file():
            raise FileNotFoundError(f"the {model} model is not installed ({path} is missing)")
        return path
    return Path(model)
