"""Video mode: the warp, key and warped frames, the video checkpoint layouts, the schedule and misuse errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from yolactedge import build_model, load_model
from yolactedge.model import CheckpointError, YolactEdge, save_checkpoint
from yolactedge.model.checkpoint import load_state_dict_into
from yolactedge.model.build import with_config
from yolactedge.model.temporal import (
    TemporalMemory, VideoModeError, VideoStream, carry_prototypes, is_key_frame, warp,
)

from golden_state import golden_state_dict
from official_layout import KEYS_DIR, official_state_dict

VIDEO_KEYS = {"yolact_edge_vid": "keys_yolact_edge_vid_config.json",
              "yolact_edge_vid_resnet50": "keys_yolact_edge_vid_resnet50_config.json"}


def frames(count: int, size: int, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(1, 3, size, size, generator=gen) * 255 for _ in range(count)]


def well_scaled(model: YolactEdge, seed: int = 0) -> YolactEdge:
    """Weights that keep activations O(1) through every layer, so wiring mistakes show in the outputs."""
    model.load_state_dict(golden_state_dict(model, seed))
    return model


@pytest.fixture
def video_model() -> YolactEdge:
    return well_scaled(build_model("yolact_edge_vid_mobilenetv2", input_size=128))


# --- the warp ---------------------------------------------------------------------------------------------------

def test_zero_flow_is_the_identity():
    # Up to float32 rounding of x·2/(w−1) − 1: the sample lands within ~1e-6 px of the pixel.
    features = torch.randn(2, 5, 9, 13, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(warp(features, torch.zeros(2, 2, 9, 13)), features, rtol=0, atol=1e-5)


def test_integer_shifts_translate_exactly_with_zeros_outside():
    # w−1 = 16 and h−1 = 8 make every grid value exact: flow (3, −4) moves by dx = 3, dy = −4·8/16 = −2 pixels.
    features = torch.randn(1, 4, 9, 17)
    flow = torch.tensor([3.0, -4.0]).view(1, 2, 1, 1).expand(1, 2, 9, 17)
    expected = torch.zeros_like(features)
    expected[..., 2:, :-3] = features[..., :-2, 3:]  # out(y, x) = in(y − 2, x + 3)
    assert torch.equal(warp(features, flow), expected)


def test_sub_pixel_flow_is_bilinear():
    features = torch.randn(1, 3, 9, 17, dtype=torch.float32)
    flow = torch.zeros(1, 2, 9, 17)
    flow[0, 0, 4, 6] = 0.25  # dx = 0.25 px
    flow[0, 1, 4, 6] = 1.5  # dy = 1.5·8/16 = 0.75 px
    f = features[0].double()
    a, b = 0.25, 0.75  # sample at (y, x) = (4.75, 6.25)
    expected = (1 - a) * (1 - b) * f[:, 4, 6] + a * (1 - b) * f[:, 4, 7] + (1 - a) * b * f[:, 5, 6] + a * b * f[:, 5, 7]
    torch.testing.assert_close(warp(features, flow)[0, :, 4, 6].double(), expected, rtol=0, atol=1e-5)


def bilinear_reference(features: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """float64 pixel-space backward warp, zeros outside: the meaning of the original's deform_op."""
    _, h, w = features.shape
    out = np.zeros_like(features)
    for y in range(h):
        for x in range(w):
            sx, sy = x + flow[0, y, x] * (w - 1) / 16, y + flow[1, y, x] * (h - 1) / 16
            x0, y0 = int(np.floor(sx)), int(np.floor(sy))
            for yy, xx in ((y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)):
                if 0 <= yy < h and 0 <= xx < w:
                    out[:, y, x] += (1 - abs(sx - xx)) * (1 - abs(sy - yy)) * features[:, yy, xx]
    return out


def test_random_flow_matches_a_float64_reference():
    gen = torch.Generator().manual_seed(1)
    features = torch.randn(1, 4, 18, 18, generator=gen) * 20
    flow = torch.randn(1, 2, 18, 18, generator=gen) * 3
    ours = warp(features, flow)[0].double().numpy()
    reference = bilinear_reference(features[0].double().numpy(), flow[0].double().numpy())
    assert np.abs(ours - reference).max() < 1e-4
    assert (ours == 0).any()  # some samples fall outside


def test_grid_follows_the_originals_float32_order():
    gen = torch.Generator().manual_seed(2)
    features, flow = torch.randn(1, 3, 35, 35, generator=gen), torch.randn(1, 2, 35, 35, generator=gen)
    grid = torch.stack(torch.meshgrid(torch.arange(35.0), torch.arange(35.0), indexing="xy")).unsqueeze(0)
    grid *= torch.tensor([2 / 34, 2 / 34], dtype=torch.float32).view(1, 2, 1, 1)
    grid -= 1
    grid += flow / 8
    expected = F.grid_sample(features, grid.permute(0, 2, 3, 1), mode="bilinear", padding_mode="zeros",
                             align_corners=True)
    assert torch.equal(warp(features, flow), expected)


def test_warp_refuses_mismatched_or_single_pixel_maps():
    with pytest.raises(ValueError, match="differ in size"):
        warp(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 5, 4))
    with pytest.raises(ValueError, match="at least 2"):
        warp(torch.zeros(1, 1, 1, 4), torch.zeros(1, 2, 1, 4))


# --- key and warped frames --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("preset", "size"), [("yolact_edge_vid_mobilenetv2", 128), ("yolact_edge_vid_resnet50", 96)])
def test_key_frame_outputs_are_the_image_models_bit_for_bit(preset, size):
    video = well_scaled(build_model(preset, input_size=size))
    image = YolactEdge(video.config.replace(video=False)).eval()
    load_state_dict_into(image, video.state_dict())
    x = frames(1, size)[0]
    with torch.no_grad():
        outputs, memory = video.key_frame(x)
        reference = image(x)
    assert all(torch.equal(a, b) for a, b in zip(outputs, reference))
    assert memory.key_p4.shape[-2:] == (size // 16, size // 16) and memory.key_flow_features.shape[1] == 64


def set_transfer(model: YolactEdge, scale: float, bias: float) -> None:
    """Zero flow everywhere, and a constant scale and bias on both warped levels."""
    with torch.no_grad():
        for level in (model.flow_net.pred2, model.flow_net.pred3):
            level.conv.weight.zero_()
            for conv, value in ((level.scale, scale), (level.bias, bias)):
                conv.weight.zero_()
                conv.bias.fill_(value)


def test_zero_flow_on_the_same_frame_without_spa_gives_the_key_frame(video_model):
    set_transfer(video_model, scale=1.0, bias=0.0)
    spa = {k: v.clone() for k, v in video_model.spa.state_dict().items()}
    with torch.no_grad():
        for v in video_model.spa.parameters():
            v.zero_()  # refine(...) = LeakyReLU(0) = 0: SPA passes P4, P5 through
        x = frames(1, 128, seed=3)[0]
        key_outputs, memory = video_model.key_frame(x)
        warped = video_model.warped_frame(x, memory)
    video_model.spa.load_state_dict(spa)
    # P4, P5 come back up to the identity grid's rounding; P3 = up(P4) + lateral is the key frame's P3 again.
    for a, b in zip(warped, key_outputs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_warped_frame_follows_the_derivation(video_model):
    """Zero flow, scale 2, bias 0.5, SPA active: every step written out with plain torch ops."""
    set_transfer(video_model, scale=2.0, bias=0.5)
    key_frame, current = frames(2, 128, seed=4)
    m = video_model
    with torch.no_grad():
        _, memory = m.key_frame(key_frame)
        ours = m.warped_frame(current, memory)
        c3, c4, c5 = m.backbone(m.normalise(key_frame))
        _, key_p4, key_p5 = m.fpn_phase_1([c3, c4, c5])
        lateral = m.fpn_phase_1.lat_layers[2](m.backbone(m.normalise(current))[0])
        p4, p5 = 2 * key_p4 + 0.5, 2 * key_p5 + 0.5

        def up(t, like):
            return F.interpolate(t, size=like.shape[-2:], mode="bilinear", align_corners=False)

        def refine(index, feature, lat):
            conv = m.spa.refine_convs[index][0]
            return feature + F.leaky_relu(F.conv2d(torch.cat((feature, lat), 1), conv.weight, conv.bias, padding=1), 0.1)

        p3 = up(p4, lateral) + lateral
        lateral4 = up(lateral, p4)
        lateral5 = up(lateral4, p5)  # the chained resize
        expected = m._outputs(m._predict(m.fpn_phase_2([p3, refine(0, p4, lateral4), refine(1, p5, lateral5)])))
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_flow_net_gets_the_current_frame_first_and_moves_features():
    model = well_scaled(build_model("yolact_edge_vid_mobilenetv2", input_size=96), seed=1)
    key_frame, current = frames(2, 96, seed=5)
    seen = []
    hook = model.flow_net.register_forward_hook(lambda _m, args, _out: seen.append(args))
    with torch.no_grad():
        _, memory = model.key_frame(key_frame)
        moved = model.warped_frame(current, memory)
        lateral = model.fpn_phase_1.lat_layers[2](model.backbone.forward_c3(model.normalise(current)))
        assert torch.equal(seen[0][0], model.flow_net_pre_convs(lateral))
        assert seen[0][1] is memory.key_flow_features
        hook.remove()
        set_transfer(model, scale=1.0, bias=0.0)
        still = model.warped_frame(current, memory)
    assert not torch.allclose(moved[0], still[0])  # the predicted flow (and scale/bias) matter


def test_c3_only_backbone_matches_the_full_backbones_c3():
    for preset in ("yolact_edge_vid_mobilenetv2", "yolact_edge_vid_resnet50"):
        model = build_model(preset, input_size=96)
        x = model.normalise(frames(1, 96)[0])
        with torch.no_grad():
            assert torch.equal(model.backbone.forward_c3(x), model.backbone(x)[0])


# --- carrying the key frame's prototypes (ours) -----------------------------------------------------------------

def test_carried_prototypes_move_by_the_resized_flows_share_of_the_grid():
    # A constant P4-level flow (2, -4) on a 5x5 field, prototypes 17x17 (w-1 = h-1 = 16): the resized field is
    # the same constant, so the prototypes move by dx = 2·16/16 = 2 and dy = -4·16/16 = -4 pixels, zeros outside.
    proto = torch.rand(1, 17, 17, 3, generator=torch.Generator().manual_seed(0))
    flow = torch.tensor([2.0, -4.0]).view(1, 2, 1, 1).expand(1, 2, 5, 5)
    expected = torch.zeros_like(proto)
    expected[:, 4:, :-2] = proto[:, :-4, 2:]  # out(y, x) = in(y − 4, x + 2)
    assert torch.equal(carry_prototypes(proto, flow), expected)


def test_carried_prototypes_are_grid_sample_with_the_bilinearly_resized_flow():
    gen = torch.Generator().manual_seed(3)
    proto, flow = torch.rand(2, 36, 36, 4, generator=gen), torch.randn(2, 2, 9, 9, generator=gen)
    resized = F.interpolate(flow, size=(36, 36), mode="bilinear", align_corners=False)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 36), torch.linspace(-1, 1, 36), indexing="ij")
    grid = torch.stack((xs, ys), dim=-1) + resized.permute(0, 2, 3, 1) / 8
    expected = F.grid_sample(proto.permute(0, 3, 1, 2), grid, mode="bilinear", padding_mode="zeros",
                             align_corners=True).permute(0, 2, 3, 1)
    carried = carry_prototypes(proto, flow)
    torch.testing.assert_close(carried, expected, rtol=0, atol=1e-5)
    assert carried.min() >= 0 and (carried == 0).any()  # still non-negative; some samples fall outside


def test_a_carrying_model_skips_the_protonet_and_changes_nothing_else(video_model):
    carrying = with_config(video_model, carry_protos=True)
    key, current = frames(2, 128, seed=7)
    protonet_calls = []
    hook = carrying.proto_net.register_forward_hook(lambda *_: protonet_calls.append(1))
    with torch.no_grad():
        key_outputs, memory = carrying.key_frame(key)
        assert protonet_calls == [1] and torch.equal(memory.key_proto, key_outputs[3])
        carried = carrying.warped_frame(current, memory)
        assert protonet_calls == [1]
        hook.remove()
        _, plain_memory = video_model.key_frame(key)
        plain = video_model.warped_frame(current, plain_memory)
        lateral = carrying.fpn_phase_1.lat_layers[-1](carrying.backbone.forward_c3(carrying.normalise(current)))
        flow = carrying.flow_net(carrying.flow_net_pre_convs(lateral), memory.key_flow_features)[0].flow
    assert plain_memory.key_proto is None and "key_proto" in repr(memory)
    assert all(torch.equal(a, b) for a, b in zip(carried[:3], plain[:3]))  # boxes, scores, masks
    assert torch.equal(carried[3], carry_prototypes(key_outputs[3], flow))
    assert not torch.allclose(carried[3], plain[3])


def test_carrying_needs_a_video_model_and_a_memory_with_prototypes(video_model):
    with pytest.raises(ValueError, match="carry_protos needs a video model"):
        build_model("yolact_edge_mobilenetv2").config.replace(carry_protos=True)
    assert not video_model.config.replace(carry_protos=True).replace(video=False).carry_protos
    carrying = with_config(video_model, carry_protos=True)
    x = frames(1, 128)[0]
    with torch.no_grad():
        _, memory = carrying.key_frame(x)
    without = TemporalMemory(memory.key_p4, memory.key_p5, memory.key_flow_features, memory.image_shape,
                             memory.model_id)
    one_line_error(VideoModeError, lambda: carrying.warped_frame(x, without), "memory holds none")


def test_load_model_turns_carrying_on_and_the_sidecar_keeps_it(tmp_path, video_model):
    path = save_checkpoint(video_model, tmp_path / "vid.pth")
    assert not load_model(path).config.carry_protos
    assert load_model(path, carry_protos=True).config.carry_protos
    carried_path = save_checkpoint(with_config(video_model, carry_protos=True), tmp_path / "carried.pth")
    assert load_model(carried_path).config.carry_protos


# --- presets and checkpoints ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("preset", "params"), [("yolact_edge_vid", 54_381_375), ("yolact_edge_vid_resnet50", 35_389_247)])
def test_video_parameter_counts_match_the_original(preset, params):
    assert sum(p.numel() for p in build_model(preset).parameters()) == params


@pytest.mark.parametrize("preset", sorted(VIDEO_KEYS))
def test_video_state_dict_layout_is_the_official_one(preset):
    layout = json.loads((KEYS_DIR / VIDEO_KEYS[preset]).read_text())
    ours = {k: list(v.shape) for k, v in build_model(preset).state_dict().items()}
    assert list(ours) == list(layout)  # same keys, in the same order
    assert ours == layout


@pytest.mark.parametrize("preset", sorted(VIDEO_KEYS))
def test_official_video_checkpoint_loads_strictly(tmp_path, preset, recwarn):
    state = official_state_dict(VIDEO_KEYS[preset])
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    model = load_model(path)
    assert model.config.video and model.config.num_classes == 41
    loaded = model.state_dict()
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], v) for k, v in state.items())
    assert not [w for w in recwarn if "unused" in str(w.message)]
    image = load_model(path, video=False)
    assert not hasattr(image, "flow_net")
    assert [w for w in recwarn if "unused" in str(w.message)]


def test_a_state_dict_of_the_originals_eval_mode_model_loads(tmp_path):
    """After load_weights with training=False the original adds a partial_backbone copy and wraps flow_net."""
    state = official_state_dict(VIDEO_KEYS["yolact_edge_vid_resnet50"])
    stages = ("backbone.conv1.", "backbone.bn1.", "backbone.layers.0.", "backbone.layers.1.")
    saved = {("flow_net." + k if k.startswith("flow_net.") else k): v for k, v in state.items()}
    saved.update({"partial_" + k: v.clone() for k, v in state.items() if k.startswith(stages)})
    assert len(saved) - len(state) == 144  # with the 31 renamed keys: 175 added, 31 removed, as documented
    torch.save(saved, tmp_path / "eval_mode.pth")
    loaded = load_model(tmp_path / "eval_mode.pth").state_dict()
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], v) for k, v in state.items())


def test_video_model_saves_and_reloads_as_a_video_model(tmp_path, video_model):
    path = save_checkpoint(video_model, tmp_path / "vid.pth")
    reloaded = load_model(path)
    assert reloaded.config == video_model.config
    x = frames(1, 128)[0]
    with torch.no_grad():
        _, memory = reloaded.key_frame(x)
        assert torch.equal(reloaded.warped_frame(x, memory)[1], video_model.warped_frame(x, video_model.key_frame(x)[1])[1])


# --- misuse -----------------------------------------------------------------------------------------------------

def one_line_error(error_type, call, match: str) -> str:
    with pytest.raises(error_type, match=match) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and issubclass(error_type, ValueError)
    return message


def test_warped_frame_without_a_usable_memory_says_what_to_do(video_model):
    x = frames(1, 128)[0]
    with torch.no_grad():
        _, memory = video_model.key_frame(x)
        one_line_error(VideoModeError, lambda: video_model.warped_frame(x, None), "call key_frame")
        one_line_error(VideoModeError, lambda: video_model.warped_frame(x, {"feats": []}), "TemporalMemory")
        other_size = frames(1, 96)[0]
        one_line_error(VideoModeError, lambda: video_model.warped_frame(other_size, memory), "this frame is")
        two = torch.cat([x, x])
        one_line_error(VideoModeError, lambda: video_model.warped_frame(two, memory), "run key_frame")
        other = build_model("yolact_edge_vid_mobilenetv2", input_size=128)
        one_line_error(VideoModeError, lambda: other.warped_frame(x, memory), "another model")


def test_image_models_refuse_video_mode(tmp_path):
    image = build_model("yolact_edge_mobilenetv2", input_size=96)
    x = frames(1, 96)[0]
    one_line_error(VideoModeError, lambda: image.key_frame(x), "video preset")
    path = save_checkpoint(image, tmp_path / "image.pth")
    one_line_error(CheckpointError, lambda: load_model(path, video=True), "image-only checkpoint")
    one_line_error(CheckpointError, lambda: load_model(path, "yolact_edge_vid_mobilenetv2"), "image-only checkpoint")


def test_video_presets_need_a_p5_of_at_least_2x2():
    with pytest.raises(ValueError, match="at least 33"):
        build_model("yolact_edge_vid_mobilenetv2", input_size=32)


# --- the key-frame schedule -------------------------------------------------------------------------------------

def test_every_fifth_frame_is_a_key_frame_as_in_evalvideo():
    assert [i for i in range(16) if is_key_frame(i)] == [0, 5, 10, 15]
    assert all(is_key_frame(i, interval=1) for i in range(4))


def test_a_phase_makes_the_frames_before_the_first_key_frame_key_frames_too():
    assert [i for i in range(12) if is_key_frame(i, 5, phase=3)] == [0, 1, 2, 3, 8]


@pytest.mark.parametrize(("index", "interval", "phase"), [(0, 0, 0), (0, 5, 5), (0, 5, -1), (-1, 5, 0)])
def test_bad_schedules_are_refused(index, interval, phase):
    with pytest.raises(ValueError):
        is_key_frame(index, interval, phase)


def test_video_stream_keeps_the_latest_key_frame(video_model):
    calls = []
    stream = VideoStream(video_model, interval=3)
    original_key, original_warped = video_model.key_frame, video_model.warped_frame

    def key_frame(x):
        calls.append("key")
        return original_key(x)

    def warped_frame(x, memory):
        calls.append(memory)
        return original_warped(x, memory)

    video_model.key_frame, video_model.warped_frame = key_frame, warped_frame
    try:
        with torch.no_grad():
            outputs = [stream(x) for x in frames(5, 128, seed=6)]
    finally:
        del video_model.key_frame, video_model.warped_frame
    assert calls[0] == "key" and calls[3] == "key"
    assert isinstance(calls[1], TemporalMemory) and calls[1] is calls[2] and calls[4] is stream.memory
    assert calls[4] is not calls[1] and len(outputs) == 5
