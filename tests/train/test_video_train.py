"""The two video training stages on tiny synthetic videos: what learns, what stays bit-identical, what loads."""
from __future__ import annotations

import json

import pytest
import torch

from yolactedge.assets import resolve_model_path
from yolactedge.cli import main
from yolactedge.data.synthetic_video import generate_videos
from yolactedge.model.build import load_model
from yolactedge.model.checkpoint import CheckpointError, read_state_dict, remap_state_dict
from yolactedge.train.state import seed_everything
from yolactedge.train.video import (FLOW_MODULES, WARP_MODULES, freeze_for_stage, load_start_model, stage_losses,
                                    train_video)
from yolactedge.train.video_data import FramePairs, VideoDataError

SIZE = 96


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return generate_videos(tmp_path_factory.mktemp("vid") / "vid", 2, 4, seed=0, image_size=SIZE)


@pytest.fixture(scope="module")
def flow_run(videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("flow")
    path = train_video(videos, weights="demo", stage="flow", iters=10, batch_size=2, lr=1e-3,
                       optimizer_name="adamw", input_size=SIZE, out_dir=out, log_every=1, threads=1)
    return path


def _module_of(key: str) -> str:
    return key.split(".")[0]


def _changed_modules(before: dict, after: dict) -> set[str]:
    assert before.keys() == after.keys()
    return {_module_of(k) for k in before if not torch.equal(before[k], after[k])}


def test_flow_stage_lowers_feature_matching_loss(videos, flow_run):
    pairs = FramePairs(videos, SIZE, max_gap=5, seed=123)
    keys, currents, targets = pairs.batch(0, 8)
    seed_everything(0)
    start, _ = load_start_model("demo", lambda message: None, SIZE)
    freeze_for_stage(start, "flow")
    trained = load_model(flow_run)
    with torch.no_grad():
        before = float(stage_losses(start, "flow", keys, currents, targets, None)["W"])
        after = float(stage_losses(trained, "flow", keys, currents, targets, None)["W"])
    assert after < 0.9 * before, (before, after)
    logged = [json.loads(line)["W"] for line in (flow_run.parent / "metrics.jsonl").read_text().splitlines()]
    assert len(logged) == 10 and sum(logged[-3:]) < sum(logged[:3])


def test_flow_stage_changes_only_the_flow_modules(flow_run):
    demo = remap_state_dict(read_state_dict(resolve_model_path("demo")))
    trained = read_state_dict(flow_run)
    assert {_module_of(k) for k in trained} - {_module_of(k) for k in demo} == {"flow_net", "flow_net_pre_convs", "spa"}
    for key, tensor in demo.items():  # BatchNorm running statistics included
        assert torch.equal(trained[key], tensor), key


def test_spa_starts_as_the_identity_and_the_flow_stage_keeps_it():
    model, trained = load_start_model("demo", lambda message: None, SIZE)
    lateral, p4, p5 = torch.randn(1, 64, 12, 12), torch.randn(1, 64, 6, 6), torch.randn(1, 64, 3, 3)
    with torch.no_grad():
        refined = model.spa(lateral, p4, p5)
    assert not trained
    assert torch.equal(refined[0], p4) and torch.equal(refined[1], p5)


def test_warp_stage_updates_exactly_the_listed_modules(videos, flow_run, tmp_path):
    path = train_video(videos, weights=flow_run, stage="warp", iters=2, batch_size=2, lr=1e-3,
                       optimizer_name="adamw", out_dir=tmp_path, threads=1)
    changed = _changed_modules(read_state_dict(flow_run), read_state_dict(path))
    assert changed == set(WARP_MODULES)
    assert not changed & {"backbone", "fpn_phase_1"}
    assert set(FLOW_MODULES) <= changed
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["training"]["video_stage"] == "warp"
    assert {"B", "C", "M", "S", "K", "W"} <= set(sidecar["training"]["metrics"])


def test_saved_checkpoint_runs_as_a_video_model(flow_run):
    model = load_model(flow_run)
    assert model.config.video and model.config.input_size == SIZE
    x = torch.rand(1, 3, SIZE, SIZE) * 255
    with torch.no_grad():
        _, memory = model.key_frame(x)
        boxes, scores, _, _ = model.warped_frame(x, memory)
    assert boxes.shape[1] == scores.shape[2] and torch.isfinite(scores).all()


def test_training_path_computes_what_warped_frame_computes(videos, flow_run):
    """The warp stage's losses see exactly the outputs inference gives the frame warped and as a key frame."""
    model = load_model(flow_run)
    keys, currents, _ = FramePairs(videos, SIZE, max_gap=5, seed=0).batch(0, 1)
    captured = []
    original = model.forward_train_from_phase_1

    def capture(phase_1):
        captured.append(original(phase_1))
        return captured[-1]

    model.forward_train_from_phase_1 = capture
    with torch.no_grad():
        stage_losses(model, "warp", keys, currents, None, lambda outputs, targets: {})
        _, memory = model.key_frame(keys)
        _, scores, coefs, proto = model.warped_frame(currents, memory)
    outputs = captured[0]  # the warped frame's; the second call is the current frame as a key frame
    torch.testing.assert_close(torch.softmax(outputs.conf, -1)[..., 1:].transpose(1, 2), scores)
    torch.testing.assert_close(outputs.coef, coefs)
    torch.testing.assert_close(outputs.proto, proto)
    with torch.no_grad():
        _, key_scores, _, _ = model(currents)
    torch.testing.assert_close(torch.softmax(captured[1].conf, -1)[..., 1:].transpose(1, 2), key_scores)


def test_image_dataset_is_refused_in_one_line(tmp_path):
    (tmp_path / "annotations.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(VideoDataError, match="COCO image dataset") as info:
        train_video(tmp_path, stage="flow", iters=1, out_dir=tmp_path / "out")
    assert "\n" not in str(info.value)


def test_checkpoint_of_neither_layout_is_refused(videos, tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"encoder.weight": torch.zeros(2, 2)}, bad)
    with pytest.raises(CheckpointError, match="not a YOLACT-Edge state_dict"):
        train_video(videos, weights=bad, stage="flow", iters=1, out_dir=tmp_path / "out")


def test_warp_stage_from_an_untrained_flow_net_warns(videos, tmp_path):
    with pytest.warns(UserWarning, match="flow net was never trained"):
        train_video(videos, weights="demo", stage="warp", iters=1, batch_size=1, input_size=SIZE,
                    out_dir=tmp_path, threads=1)


def test_unknown_stage_is_refused(videos, tmp_path):
    with pytest.raises(ValueError, match="unknown video stage 'flows'"):
        train_video(videos, stage="flows", out_dir=tmp_path)


def test_cli_trains_a_video_stage(videos, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--video-stage", "flow", "--data", str(videos), "--imgsz", str(SIZE), "--iters", "2",
                 "--batch", "1", "--out", str(out), "--threads", "1"]) == 0
    assert f"checkpoint: {out / 'last.pth'}" in capsys.readouterr().out
    assert load_model(out / "last.pth").config.video


@pytest.mark.parametrize("flags, message", [
    (["--resume"], "--resume does not apply to --video-stage"),
    (["--config", "yolact_edge_demo"], "--config does not apply to --video-stage"),
])
def test_cli_refuses_image_only_flags(videos, tmp_path, capsys, flags, message):
    assert main(["train", "--video-stage", "warp", "--data", str(videos), "--out", str(tmp_path), *flags]) == 2
    assert message in capsys.readouterr().err


def test_cli_names_an_image_dataset(tmp_path, capsys):
    (tmp_path / "annotations.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    assert main(["train", "--video-stage", "flow", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "a COCO image dataset" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_a_model_that_carries_prototypes_also_learns_to_move_them(videos):
    from yolactedge.model.build import with_config

    seed_everything(0)
    start, _ = load_start_model("demo", lambda message: None, SIZE)
    model = with_config(start, carry_protos=True)
    freeze_for_stage(model, "flow")
    keys, currents, targets = FramePairs(videos, SIZE, max_gap=5, seed=1).batch(0, 2)
    losses = stage_losses(model, "flow", keys, currents, targets, None)
    assert set(losses) == {"W", "P"} and float(losses["P"]) > 0
    losses["P"].backward()
    assert model.flow_net.pred2.conv.weight.grad.abs().sum() > 0  # the P4-level flow learns from it
    assert model.proto_net[0].weight.grad is None  # the protonet stays frozen
    freeze_for_stage(start, "flow")
    with torch.no_grad():
        assert set(stage_losses(start, "flow", keys, currents, targets, None)) == {"W"}


def test_carry_protos_is_refused_for_image_training(capsys, tmp_path):
    code = main(["train", "--data", str(tmp_path), "--carry-protos"])
    err = capsys.readouterr().err
    assert code == 2 and "--carry-protos is for video models" in err and "Traceback" not in err
