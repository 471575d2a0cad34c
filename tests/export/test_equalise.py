"""Stream equalisation before int8 calibration: the float model does not move, every weight comes back, the
equalised channels share one magnitude, and a reader left unscaled is caught."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import synthetic
from yolactedge.export import equalise
from yolactedge.export.common import ExportError
from yolactedge.export.equalise import equalised_streams
from yolactedge.export.onnx import torch_images
from yolactedge.model.build import build_model, load_model


@pytest.fixture(scope="module")
def demo():
    return load_model("demo")


@pytest.fixture(scope="module")
def images():
    return synthetic(12, seed=5, size=320).astype("float32")


def outputs(model, images):
    with torch.no_grad():
        return model(torch_images(images[:3]))


def relative_error(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_float_outputs_unchanged_and_weights_restored(demo, images):
    before = {k: v.clone() for k, v in demo.state_dict().items()}
    reference = outputs(demo, images)
    with equalised_streams(demo, images, min_disparity=1.0) as report:  # every stage
        assert report["applicable"] and report["stages"] == [1, 2, 3, 4, 5, 6]
        changed = [k for k, v in demo.state_dict().items() if not torch.equal(v, before[k])]
        assert any(k.startswith("fpn_phase_1.lat_layers") for k in changed)
        assert {k.split(".")[2] for k in changed if k.startswith("backbone.")} == {"1", "2", "3", "4", "5", "6", "7"}
        for a, b in zip(outputs(demo, images), reference):
            assert relative_error(a, b) < 1e-5
    assert all(torch.equal(v, before[k]) for k, v in demo.state_dict().items())


def test_a_video_model_keeps_its_warped_frames_too(images):
    """The warped frame reads the stream through the C3 lateral and the flow net: its outputs are checked too."""
    video = load_model("demo-video")
    reference = equalise._outputs(video, images[:2])
    assert {name for name in reference if name.startswith("warped-frame")} == {
        "warped-frame boxes", "warped-frame scores", "warped-frame masks", "warped-frame protos"}
    with equalised_streams(video, images, min_disparity=1.0) as report:
        assert report["stages"] == [1, 2, 3, 4, 5, 6]
        for name, tensor in equalise._outputs(video, images[:2]).items():
            assert relative_error(tensor, reference[name]) < 1e-5, name


def test_fully_equalised_channels_reach_one_magnitude(demo, images):
    before = equalise._stream_magnitudes(demo, images)
    with equalised_streams(demo, images, min_disparity=1.0, strength=1.0):
        after = equalise._stream_magnitudes(demo, images)
    for stage, peaks in after.items():
        spread = before[stage].amax(0).max() / before[stage].amax(0).min()
        magnitude = peaks.amax(0)
        assert spread > 2  # the channels differed
        assert float(magnitude.max() / magnitude.min()) == pytest.approx(1.0, abs=1e-4)


def test_strength_equalises_part_of_the_way(demo, images):
    """At strength 0.5 each channel keeps the square root of its ratio to the median channel's magnitude."""
    before = equalise._stream_magnitudes(demo, images)[6].amax(0)
    reference = outputs(demo, images)
    with equalised_streams(demo, images, min_disparity=1.0, strength=0.5) as report:
        after = equalise._stream_magnitudes(demo, images)[6].amax(0)
        for a, b in zip(outputs(demo, images), reference):
            assert relative_error(a, b) < 1e-5
    assert report["strength"] == 0.5
    expected = (before / before.median()) ** 0.5
    torch.testing.assert_close(after / after.median(), expected, rtol=1e-3, atol=1e-4)
    assert float(after.max() / after.min()) == pytest.approx(float((before.max() / before.min()) ** 0.5), rel=1e-3)


def test_the_default_equalises_only_the_demo_last_stage(demo):
    """On 100 synthetic renders C5's stream reaches over 4x its median channel, every other stage about 2x."""
    renders = synthetic(100, seed=31337, size=320).astype("float32")
    with equalised_streams(demo, renders) as report:
        assert report["stages"] == [6] and report["disparity"][6] > 4 > max(report["disparity"][s] for s in range(1, 6))


def test_threshold_selects_by_disparity(demo, images):
    with equalised_streams(demo, images, min_disparity=float("inf")) as report:
        assert report["stages"] == []
        disparity = report["disparity"]
    assert sorted(disparity) == [1, 2, 3, 4, 5, 6] and all(r >= 1 for r in disparity.values())
    stage, ratio = max(disparity.items(), key=lambda kv: kv[1])
    with equalised_streams(demo, images, min_disparity=ratio * 0.99) as report:  # the report rounds to 0.01
        assert report["stages"] == [stage]
    with equalised_streams(demo, images, min_disparity=ratio * 1.01) as report:
        assert report["stages"] == []


def test_a_reader_left_unscaled_is_caught_and_nothing_changes(demo, images, monkeypatch):
    before = {k: v.clone() for k, v in demo.state_dict().items()}
    lateral = demo.fpn_phase_1.lat_layers[0].weight  # reads stage 6, C5
    scale = equalise._scale
    monkeypatch.setattr(equalise, "_scale", lambda p, f, saved: None if p is lateral else scale(p, f, saved))
    with pytest.raises(ExportError, match="changed the float"):
        with equalised_streams(demo, images, min_disparity=1.0):
            pass
    assert all(torch.equal(v, before[k]) for k, v in demo.state_dict().items())


def test_resnet_streams_are_left_alone(images):
    model = build_model("yolact_edge_resnet50", input_size=320)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with equalised_streams(model, images) as report:
        assert not report["applicable"] and report["stages"] == [] and "ResNet" in report["reason"]
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_stream_of_another_layout_is_refused_before_any_weight_changes(demo):
    """A scale that does not match the stream's channels (a backbone other than the one this code assumes)."""
    before = {k: v.clone() for k, v in demo.state_dict().items()}
    with pytest.raises(ExportError, match="unexpected producer of stage 6"):
        equalise._rescale_stream(demo, 6, torch.ones(7), {})
    lateral = demo.fpn_phase_1.lat_layers[0]
    demo.fpn_phase_1.lat_layers[0] = torch.nn.Conv2d(160, 32, 3)  # a reader that is not a 1x1 convolution
    try:
        with pytest.raises(ExportError, match="unexpected reader of stage 6"):
            equalise._rescale_stream(demo, 6, torch.full((160,), 2.0), {})
    finally:
        demo.fpn_phase_1.lat_layers[0] = lateral
    assert all(torch.equal(v, before[k]) for k, v in demo.state_dict().items())


def test_the_summary_line_says_what_was_done():
    from yolactedge.export.common import _equalisation_line

    report = {"applicable": True, "disparity": {1: 2.1, 6: 4.84}, "stages": [6], "threshold": 4.0, "strength": 0.5}
    assert _equalisation_line(report) == ("equalised before calibration: stage 6 (largest channel 4.8x the median's, "
                                          "2.2x after the rescaling at strength 0.5; other stages at most 2.1x)")
    assert "1.0x after the rescaling at strength 1" in _equalisation_line(report | {"strength": 1.0})
    assert _equalisation_line(report | {"stages": []}) == (
        "not equalised: no stage's largest channel reaches 4x its median (at most 4.8x)")
    assert _equalisation_line(equalise.not_equalised(equalise.EQUALISATION_OFF)) == (
        "not equalised: turned off (--no-equalise)")
