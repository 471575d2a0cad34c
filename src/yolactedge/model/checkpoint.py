"""Checkpoints in the original implementation's layout: load (any known layout), infer the config, save.

A checkpoint is a flat state_dict, exactly what the original's train.py writes, so official
`yolact_edge_*.pth` files load unchanged and ours load in the original code. What a state_dict cannot say
(input size, anchor scales, class names) travels in an optional JSON sidecar, `<name>.json`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import torch

from ..config import (
    COCO_CLASSES,
    DEMO_CLASSES,
    YOUTUBE_VIS_CLASSES,
    ModelConfig,
    config_from_dict,
    config_to_dict,
    get_preset,
)
from ..fileio import atomic_write, atomic_write_json
from .backbone import RESNET_BLOCKS
from .yolact import YolactEdge

# Keys of the video configs' temporal modules: unused by single-image inference.
VIDEO_ONLY_PREFIXES = ("flow_net.", "flow_net_pre_convs.", "spa.")


# The "kind" of a training resume state (train/state.py): it holds a model, but is not a model file.
TRAIN_STATE_KIND = "yolactedge_train_state"


class CheckpointError(ValueError):
    """A file that cannot be used as YOLACT-Edge weights; the message says why in one line."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state_dict with `weights_only=True`: a file that needs code to unpickle is refused, never run."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as f:
        magic = f.read(4)
    # torch.save writes a zip archive; pre-1.6 files are a bare pickle starting with the PROTO opcode.
    if not (magic.startswith(b"PK") or magic.startswith(b"\x80")):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a torch zip archive nor a pickle)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's protocol notes would only repeat our own message
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"unsupported GLOBAL (\S+?)\.?\s", str(exc))
        what = f"it references {found.group(1)}" if found else "it uses pickle constructs beyond plain tensors"
        raise CheckpointError(f"{path}: refused, loading it would need arbitrary code ({what})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        first = str(exc).strip().splitlines()[0][:100] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({first})") from None
    # Our resume states carry `kind`; those written before it are known by the RNG state every one of them
    # holds. Another trainer's {model, optimizer, iteration} wrapper is a model and loads below.
    resume_keys = {"model", "optimizer", "iteration", "rng"}
    if isinstance(obj, dict) and (obj.get("kind") == TRAIN_STATE_KIND or resume_keys <= set(obj)):
        # Its model would load, but under a guessed config (no sidecar): wrong input size, AP near zero.
        raise CheckpointError(f"{path}: a training resume state (for train --resume), not a model; "
                              f"load {path.parent / 'last.pth'} instead")
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: does not hold a state_dict of tensors")
    return obj


def remap_state_dict(state_dict: dict[str, torch.Tensor], num_downsample: int = 2) -> dict[str, torch.Tensor]:
    """Translate legacy layouts to the split-FPN layout, as the original's load_weights does.

    Drops old `backbone.layerN.*` keys and `fpn.downsample_layers.{>=num_downsample}`, renames
    `fpn.lat_layers.*` → `fpn_phase_1.lat_layers.*` and any other `fpn.*` → `fpn_phase_2.*`.
    A video model's state_dict saved after the original's eval-mode load_weights has two more changes, undone
    here: `partial_backbone.*` (a copy of backbone weights, dropped) and `flow_net.flow_net.*` (a wrapper).
    """
    out = {}
    for key, value in state_dict.items():
        if key.startswith("backbone.layer") and not key.startswith("backbone.layers"):
            continue
        if key.startswith("partial_backbone."):
            continue
        if key.startswith("flow_net.flow_net."):
            key = key[len("flow_net."):]
        match = re.match(r"fpn\.downsample_layers\.(\d+)\.", key)
        if match and int(match.group(1)) >= num_downsample:
            continue
        if key.startswith("fpn.lat_layers."):
            key = "fpn_phase_1." + key[len("fpn."):]
        elif key.startswith("fpn."):
            key = "fpn_phase_2." + key[len("fpn."):]
        out[key] = value
    return out


def _shape(state_dict: dict[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise CheckpointError(f"not a YOLACT-Edge state_dict: key {key!r} is missing")
    return tuple(state_dict[key].shape)


def infer_config(state_dict: dict[str, torch.Tensor], input_size: int = 550) -> ModelConfig:
    """Read backbone, widths, class count and video mode off the tensors themselves (never off the file name)."""
    state_dict = remap_state_dict(state_dict)
    if "backbone.conv1.weight" in state_dict:
        stage3 = {k.split(".")[3] for k in state_dict if k.startswith("backbone.layers.2.")}
        backbone = next((name for name, blocks in RESNET_BLOCKS.items() if blocks[2] == len(stage3)), None)
        if backbone is None:
            raise CheckpointError(f"ResNet backbone with {len(stage3)} blocks in stage 3 is not supported (50 or 101 only)")
    elif len(state_dict.get("backbone.layers.0.0.weight", torch.empty(0)).shape) == 4:
        backbone = "mobilenetv2"
    else:
        raise CheckpointError("not a YOLACT-Edge state_dict: no known backbone keys (backbone.layers.*)")
    fpn_channels = _shape(state_dict, "fpn_phase_1.lat_layers.0.weight")[0]
    proto_channels = _shape(state_dict, "proto_net.0.weight")[0]
    mask_dim = _shape(state_dict, "proto_net.10.weight")[0]
    num_anchors = _shape(state_dict, "prediction_layers.0.bbox_layer.weight")[0] // 4
    num_classes = _shape(state_dict, "prediction_layers.0.conf_layer.weight")[0] // num_anchors
    names = {81: COCO_CLASSES, 41: YOUTUBE_VIS_CLASSES, len(DEMO_CLASSES) + 1: DEMO_CLASSES}.get(num_classes)
    if names is None:
        names = tuple(f"class{i}" for i in range(num_classes - 1))
    base = get_preset("yolact_edge_mobilenetv2" if backbone == "mobilenetv2" else "yolact_edge")
    return dataclasses.replace(
        base.at_input_size(input_size), name=f"inferred_{backbone}", backbone=backbone, num_classes=num_classes,
        fpn_channels=fpn_channels, proto_channels=proto_channels, mask_dim=mask_dim, class_names=names,
        video=any(k.startswith(VIDEO_ONLY_PREFIXES) for k in state_dict),
    )


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def read_sidecar(path: str | os.PathLike) -> ModelConfig | None:
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        return config_from_dict(json.loads(side.read_text())["config"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{side}: unreadable model config ({exc})") from None


def load_state_dict_into(
    model: YolactEdge, state_dict: dict[str, torch.Tensor], *, reinit_mismatched: bool = False
) -> list[str]:
    """Load strictly after remapping; returns the keys that were ignored (video-only keys, or mismatches
    when `reinit_mismatched`, which keeps the model's fresh tensors, for fine-tuning on other classes)."""
    state_dict = remap_state_dict(state_dict)
    own = model.state_dict()
    unused = sorted(k for k in state_dict if k not in own and k.startswith(VIDEO_ONLY_PREFIXES))
    unexpected = sorted(k for k in state_dict if k not in own and k not in unused)
    missing = sorted(k for k in own if k not in state_dict)
    if missing and not unexpected and all(k.startswith(VIDEO_ONLY_PREFIXES) for k in missing):
        raise CheckpointError(
            "an image-only checkpoint (no flow_net/spa weights) cannot run in video mode: load it as an image model "
            "(video=False or an image preset), or use a video checkpoint such as yolact_edge_vid_*.pth"
        )
    if missing or unexpected:
        raise CheckpointError(
            f"state_dict does not fit {model.config.backbone} YOLACT-Edge: "
            f"{len(missing)} missing keys {_few(missing)}, {len(unexpected)} unexpected keys {_few(unexpected)}"
        )
    mismatched = [k for k in own if tuple(state_dict[k].shape) != tuple(own[k].shape)]
    if mismatched and not reinit_mismatched:
        k = mismatched[0]
        raise CheckpointError(
            f"shape mismatch for {len(mismatched)} tensors, e.g. {k}: checkpoint {tuple(state_dict[k].shape)} "
            f"vs model {tuple(own[k].shape)}"
        )
    merged = {k: (own[k] if k in mismatched else state_dict[k]) for k in own}
    model.load_state_dict(merged, strict=True)
    return unused + mismatched


def load_backbone_weights(model: YolactEdge, path: str | os.PathLike) -> int:
    """ImageNet initialisation as the original's `init_backbone` does it → number of tensors loaded.

    MobileNetV2: a torchvision `mobilenet_v2` state_dict, `classifier.*` dropped, matched to our backbone by
    position (the original zips the key lists). `num_batches_tracked` counters are left out on both sides, so
    files saved with or without them fit. ResNet: torchvision `resnet50/101` keys, `layerN.` renamed to
    `layers.(N-1).`, `fc.*` ignored. Every backbone tensor must be filled, with the same shape.
    """
    source = read_state_dict(path)
    own = {k: v for k, v in model.backbone.state_dict().items() if not k.endswith("num_batches_tracked")}
    if model.config.backbone == "mobilenetv2":
        values = [v for k, v in source.items() if not k.startswith("classifier.") and not k.endswith("num_batches_tracked")]
        if len(values) != len(own):
            raise CheckpointError(f"{path}: {len(values)} backbone tensors, MobileNetV2 needs {len(own)} "
                                  "(expected torchvision's mobilenet_v2 state_dict)")
        mapped = dict(zip(own, values))
    else:
        mapped = {re.sub(r"^layer(\d+)\.", lambda m: f"layers.{int(m.group(1)) - 1}.", k): v
                  for k, v in source.items() if not k.startswith("fc.")}
        missing = [k for k in own if k not in mapped]
        if missing:
            raise CheckpointError(f"{path}: not a torchvision {model.config.backbone} state_dict "
                                  f"({len(missing)} backbone tensors missing, e.g. {missing[0]})")
    for key, tensor in own.items():
        if tuple(mapped[key].shape) != tuple(tensor.shape):
            raise CheckpointError(f"{path}: shape mismatch at {key}: file {tuple(mapped[key].shape)} "
                                  f"vs backbone {tuple(tensor.shape)}")
    model.backbone.load_state_dict({k: mapped[k] for k in own}, strict=False)
    return len(own)


def _few(keys: list[str], count: int = 3) -> str:
    if not keys:
        return "[]"
    return "[" + ", ".join(keys[:count]) + (", ..." if len(keys) > count else "") + "]"


def save_checkpoint(model: YolactEdge, path: str | os.PathLike, *, extra: dict | None = None) -> Path:
    """Write the state_dict in the official layout plus the config sidecar, each atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(model.state_dict(), f))
    meta = {"config": config_to_dict(model.config), **(extra or {})}
    atomic_write_json(sidecar_path(path), meta, indent=1)
    return path
