"""Checkpoints in the official layouts load unchanged; bad files are refused with clear errors."""
from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

from yolactedge import build_model, load_model
from yolactedge.model import CheckpointError, read_state_dict, save_checkpoint
from yolactedge.model.checkpoint import infer_config

from official_layout import KEYS_DIR, OFFICIAL, official_state_dict


@pytest.mark.parametrize("keys_file", sorted(OFFICIAL))
def test_official_layout_loads_with_config_inferred(tmp_path, keys_file, recwarn):
    backbone, num_classes = OFFICIAL[keys_file]
    state = official_state_dict(keys_file)
    path = tmp_path / "yolact_edge_whatever_name.pth"  # the name must not matter
    torch.save(state, path)
    model = load_model(path)
    assert model.config.backbone == backbone
    assert model.config.num_classes == num_classes
    assert model.config.video == ("vid" in keys_file)  # video layouts load as video models, every key used
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert not [w for w in recwarn if "unused" in str(w.message)]


def test_saved_layout_is_the_official_one(tmp_path):
    model = build_model("yolact_edge_mobilenetv2")
    path = save_checkpoint(model, tmp_path / "out" / "model.pth")
    layout = json.loads((KEYS_DIR / "keys_yolact_edge_mobilenetv2_config.json").read_text())
    state = read_state_dict(path)
    assert list(state) == list(layout)
    assert all(list(state[k].shape) == shape for k, shape in layout.items())
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_legacy_layout_gives_identical_outputs(tmp_path):
    state = official_state_dict("keys_yolact_edge_mobilenetv2_config.json", seed=3)
    legacy = {}
    for key, value in state.items():
        if key.startswith("fpn_phase_1."):
            key = "fpn." + key[len("fpn_phase_1."):]
        elif key.startswith("fpn_phase_2."):
            key = "fpn." + key[len("fpn_phase_2."):]
        legacy[key] = value
    legacy["fpn.downsample_layers.2.weight"] = torch.zeros(256, 256, 3, 3)
    legacy["backbone.layer1.0.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "new.pth")
    torch.save(legacy, tmp_path / "legacy.pth")
    x = torch.rand(1, 3, 160, 160) * 255
    with torch.no_grad():
        expected = load_model(tmp_path / "new.pth")(x)
        got = load_model(tmp_path / "legacy.pth")(x)
    for a, b in zip(expected, got):
        assert torch.equal(a, b)


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['YOLACTEDGE_PWNED']}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("YOLACTEDGE_PWNED", str(marker))
    zipped = tmp_path / "evil.pth"
    torch.save({"backbone.layers.0.0.weight": torch.zeros(1), "x": _Payload()}, zipped)
    raw = tmp_path / "evil_raw.pth"
    raw.write_bytes(pickle.dumps(_Payload(), protocol=2))
    for path in (zipped, raw):
        with pytest.raises(CheckpointError, match="refused"):
            load_model(path)
    assert not marker.exists()


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_model(tmp_path / "missing.pth")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_model(tmp_path / "text.pth")
    good = tmp_path / "good.pth"
    torch.save(build_model("yolact_edge_demo").state_dict(), good)
    (tmp_path / "cut.pth").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(tmp_path / "cut.pth")
    torch.save({"fc.weight": torch.zeros(10, 5), "fc.bias": torch.zeros(10)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a YOLACT-Edge state_dict"):
        load_model(tmp_path / "other.pth")


def test_other_network_and_shape_mismatch_are_named(tmp_path):
    state = build_model("yolact_edge_demo").state_dict()
    state["extra.weight"] = torch.zeros(2)
    del state["proto_net.0.bias"]
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match=r"1 missing keys \[proto_net.0.bias\], 1 unexpected keys \[extra.weight\]"):
        load_model(tmp_path / "odd.pth", config="yolact_edge_demo")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        model = build_model("yolact_edge_mobilenetv2")
        torch.save(model.state_dict(), tmp_path / "coco.pth")
        load_model(tmp_path / "coco.pth", config="yolact_edge_demo")


def test_sidecar_config_round_trips(tmp_path):
    model = build_model("yolact_edge_demo")
    path = save_checkpoint(model, tmp_path / "demo.pth")
    assert load_model(path).config == model.config
    # Without the sidecar the tensors still say what they can: widths and classes.
    path.with_suffix(".json").unlink()
    inferred = infer_config(read_state_dict(path))
    assert (inferred.fpn_channels, inferred.proto_channels, inferred.num_classes) == (64, 64, 7)
    assert inferred.class_names == model.config.class_names
