"""What a run leaves in its folder, and reading it back.

Files in `out_dir` (only rank 0 writes; each write is atomic, so kill -9 at any moment leaves the old file or
the new one, never a torn one):

* `last.pth` + `last.json`: the model in the official layout with its config sidecar (`yolactedge.load_model`).
* `best.pth` + `best.json`: the best validation result so far (only with validation).
* `last_state.pt`: everything `resume` needs: model, optimizer, iteration, the run's settings, RNG states.
  It is not a model file: `load_model` refuses it and names `last.pth`.
* `metrics.jsonl`: one JSON line per log interval and per validation.
"""
from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fileio import atomic_write
from ..model.checkpoint import TRAIN_STATE_KIND, save_checkpoint

STATE_NAME = "last_state.pt"
LAST_NAME = "last.pth"
BEST_NAME = "best.pth"
METRICS_NAME = "metrics.jsonl"
RUN_FILES = (LAST_NAME, "last.json", BEST_NAME, "best.json", STATE_NAME, METRICS_NAME)


def rng_state() -> dict:
    """This process's torch, NumPy and Python generators, as tensors and plain containers (weights_only-safe)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def load_train_state(path: str | os.PathLike) -> dict:
    """Read a `last_state.pt` (tensors and plain containers only: loaded with weights_only=True)."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def save_train_state(path: Path, payload: Mapping[str, Any]) -> None:
    """Write the resume state atomically, marked so that model loaders refuse it (it is no model file)."""
    atomic_write(path, lambda f: torch.save({"kind": TRAIN_STATE_KIND, **payload}, f))


def save_model(model, path: Path, iteration: int, max_iter: int, metrics: Mapping[str, float],
               **training: Any) -> None:
    """A model checkpoint whose sidecar also says when in the run it was taken (plus any `training` facts)."""
    meta = {"training": {"iteration": iteration, "max_iter": max_iter, **training, "preset": model.config.name,
                         "metrics": {k: float(v) for k, v in metrics.items()}}}
    save_checkpoint(model, path, extra=meta)


def claim_run_folder(out: Path, *, resume: bool, exist_ok: bool) -> list[str]:
    """Create `out` for a run. An earlier run's files there (which a new run would overwrite or mix with) are
    an error unless the run resumes, or exist_ok: then they are removed; returns the removed names."""
    out.mkdir(parents=True, exist_ok=True)
    earlier = [name for name in RUN_FILES if (out / name).is_file()]
    if not earlier or resume:
        return []
    if not exist_ok:
        raise FileExistsError(f"{out} already holds a run ({', '.join(earlier)}); "
                              f"pass --resume to continue it or --exist-ok to replace it")
    for name in earlier:
        (out / name).unlink()
    return earlier

