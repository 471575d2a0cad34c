"""ImageNet backbone initialisation from torchvision-layout state_dicts, as the original's init_backbone."""
from __future__ import annotations

import re

import pytest
import torch

from yolactedge import build_model
from yolactedge.model.checkpoint import CheckpointError, load_backbone_weights
from yolactedge.train.trainer import train


def _random_backbone_values(model, seed: int = 3) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(v.shape, generator=generator) if v.is_floating_point() else v.clone())
            for k, v in model.backbone.state_dict().items()}


def _torchvision_mobilenet_names(count_blocks: int = 17) -> list[str]:
    """torchvision mobilenet_v2 parameter/buffer names in state_dict order (num_batches_tracked left out)."""
    bn = ("weight", "bias", "running_mean", "running_var")
    names = ["features.0.0.weight", *(f"features.0.1.{b}" for b in bn)]
    for block in range(1, count_blocks + 1):
        prefix = f"features.{block}.conv"
        if block == 1:  # expansion 1: depthwise, then projection
            parts = [(f"{prefix}.0.0", f"{prefix}.0.1"), (f"{prefix}.1", f"{prefix}.2")]
        else:
            parts = [(f"{prefix}.0.0", f"{prefix}.0.1"), (f"{prefix}.1.0", f"{prefix}.1.1"), (f"{prefix}.2", f"{prefix}.3")]
        for conv, norm in parts:
            names += [f"{conv}.weight", *(f"{norm}.{b}" for b in bn)]
    names += ["features.18.0.weight", *(f"features.18.1.{b}" for b in bn)]
    return names


@pytest.mark.parametrize("with_counters", [True, False])
def test_mobilenetv2_imagenet_weights_load_by_position(tmp_path, with_counters):
    model = build_model("yolact_edge_demo")
    values = {k: v for k, v in _random_backbone_values(model).items() if not k.endswith("num_batches_tracked")}
    names = _torchvision_mobilenet_names()
    assert len(names) == len(values)
    file_dict = {}
    for name, tensor in zip(names, values.values()):
        file_dict[name] = tensor
        if with_counters and name.endswith("running_var"):
            file_dict[name.replace("running_var", "num_batches_tracked")] = torch.tensor(0)
    file_dict["classifier.1.weight"] = torch.randn(1000, 1280)
    file_dict["classifier.1.bias"] = torch.randn(1000)
    # our order is torchvision's: the stem conv is 32x3x3x3, the last 1x1 conv 1280x320
    assert tuple(file_dict["features.0.0.weight"].shape) == (32, 3, 3, 3)
    assert tuple(file_dict["features.18.0.weight"].shape) == (1280, 320, 1, 1)
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(file_dict, path)

    fresh = build_model("yolact_edge_demo")
    head_before = {k: v.clone() for k, v in fresh.state_dict().items() if not k.startswith("backbone.")}
    assert load_backbone_weights(fresh, path) == len(values)
    loaded = fresh.backbone.state_dict()
    for key, tensor in values.items():
        assert torch.equal(loaded[key], tensor), key
    after = fresh.state_dict()
    assert all(torch.equal(after[k], v) for k, v in head_before.items())  # only the backbone changes


def test_resnet_imagenet_weights_load_by_name(tmp_path):
    model = build_model("yolact_edge_resnet50")
    values = _random_backbone_values(model)
    file_dict = {re.sub(r"^layers\.(\d+)\.", lambda m: f"layer{int(m.group(1)) + 1}.", k): v for k, v in values.items()}
    assert "layer1.0.downsample.0.weight" in file_dict and "conv1.weight" in file_dict
    file_dict["fc.weight"], file_dict["fc.bias"] = torch.randn(1000, 2048), torch.randn(1000)
    path = tmp_path / "resnet50.pth"
    torch.save(file_dict, path)
    fresh = build_model("yolact_edge_resnet50")
    load_backbone_weights(fresh, path)
    loaded = fresh.backbone.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in values.items() if not k.endswith("num_batches_tracked"))


def test_wrong_backbone_files_are_refused(tmp_path):
    model = build_model("yolact_edge_demo")
    short = tmp_path / "short.pth"
    torch.save({f"w{i}": torch.zeros(1) for i in range(10)}, short)
    with pytest.raises(CheckpointError, match="10 backbone tensors, MobileNetV2 needs"):
        load_backbone_weights(model, short)

    values = [v for k, v in _random_backbone_values(model).items() if not k.endswith("num_batches_tracked")]
    values[0] = torch.zeros(16, 3, 3, 3)  # a narrower stem
    shaped = tmp_path / "shaped.pth"
    torch.save(dict(zip(_torchvision_mobilenet_names(), values)), shaped)
    with pytest.raises(CheckpointError, match="shape mismatch at layers.0.0.weight"):
        load_backbone_weights(model, shaped)

    resnet = build_model("yolact_edge_resnet50")
    with pytest.raises(CheckpointError, match="not a torchvision resnet50"):
        load_backbone_weights(resnet, shaped)


def test_train_refuses_weights_and_backbone_weights_together(tmp_path):
    with pytest.raises(ValueError, match="not both"):
        train(tmp_path, weights="a.pth", backbone_weights="b.pth", iters=1, out_dir=tmp_path / "run")
