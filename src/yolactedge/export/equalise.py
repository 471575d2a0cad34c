"""Per-channel equalisation of MobileNetV2's residual streams before int8 calibration.

Each MobileNetV2 stage carries one residual stream: the first block's projection, then each later block's sum
with its own projection. int8 stores every such tensor on one grid for all of its channels, so where a few
channels reach far beyond the rest, the others get few of its 256 steps. In the demo model the last stage's
stream (C5, which the FPN's P5 to P7 and their box regressions are built from) reaches 4.7 times its median
channel's magnitude (the other stages 1.6 to 2.2), and its rounding was the largest part of the int8 box
regressions' error (docs/int8-accuracy.md).

The stream is linear (1x1 projections, BatchNorm, sums), and everything that reads it is a convolution, so
dividing channel c by s_c in every stream tensor (the projections' BatchNorm scale and shift) and multiplying
each reader's input weights for c by s_c (the later blocks' expansions, the next stage's first block, the FPN's
lateral) changes no output. With r_c the channel's largest magnitude over the calibration images divided by the
median channel's, s_c = r_c ** STRENGTH: at 1 (the default) every channel reaches the same magnitude and the grid
serves them all; below 1 each keeps part of its ratio. The converter then calibrates the equalised graph as usual;
nothing is added to it. Only streams whose largest channel reaches MIN_DISPARITY times the median's are equalised
(in the demo, C5's alone): on two synthetic sets kept apart from the held-out one, that gained a little more box
and mask AP than equalising every stage. Strength 0.5 gained more box AP than 1 on those two sets but lost box AP
on the held-out set, so 1 stays (docs/int8-accuracy.md).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np

from .common import ExportError

MIN_DISPARITY = 4.0  # equalise the streams whose largest channel reaches this many times the median's
STRENGTH = 1.0  # s_c = (channel's magnitude / median channel's) ** STRENGTH: 1 equalises fully, 0.5 halfway in log
MAX_SCALE = 16.0  # bound on s_c (and 1 / s_c), so no reader's weight column is scaled beyond int8's reach
FLOAT_TOLERANCE = 1e-4  # relative max error of the equalised model's outputs: float32 rounding, not a change
BATCH = 20
EQUALISATION_OFF = "turned off (--no-equalise)"


@contextlib.contextmanager
def equalised_streams(model, images: np.ndarray, min_disparity: float = MIN_DISPARITY,
                      strength: float = STRENGTH) -> Iterator[dict]:
    """Equalise `model`'s MobileNetV2 streams whose channel disparity on `images` (float32 NHWC, the calibration
    set) is at least `min_disparity`, yield a report, then put every weight back. `strength` < 1 equalises part
    of the way: each channel's magnitude over the median's becomes that ratio ** (1 - strength).

    A stream's disparity is the largest, over its tensors, of the largest channel's magnitude over the median
    channel's. The report: {"applicable": bool, "disparity": {stage: ratio}, "stages": [equalised stages],
    "threshold": min_disparity, "strength": strength}; a backbone without linear streams (ResNet: its sums pass a
    ReLU) is left as it is, with "applicable" False and a "reason". ExportError when the equalised model's outputs
    differ from the original's (a reader was missed).
    """
    from ..model.backbone import MobileNetV2Backbone

    if not isinstance(model.backbone, MobileNetV2Backbone) or images is None or len(images) == 0:
        yield not_equalised("no calibration images" if isinstance(model.backbone, MobileNetV2Backbone) else
                            "the backbone's residual sums pass a ReLU (ResNet), so its streams cannot be rescaled",
                            min_disparity)
        return
    model.eval()
    peaks = _stream_magnitudes(model, images)
    disparity = {stage: float((p.amax(1) / p.median(1).values.clamp(min=1e-12)).max()) for stage, p in peaks.items()}
    stages = [stage for stage, ratio in disparity.items() if ratio >= min_disparity]
    saved = {}
    reference = _outputs(model, images[:2]) if stages else None
    try:
        for stage in stages:
            magnitude = peaks[stage].amax(0)
            scale = ((magnitude / magnitude.median()) ** strength).clamp(1 / MAX_SCALE, MAX_SCALE)
            _rescale_stream(model, stage, scale, saved)
        if stages:
            _check_unchanged(_outputs(model, images[:2]), reference)
        yield {"applicable": True, "disparity": {s: round(r, 2) for s, r in disparity.items()}, "stages": stages,
               "threshold": min_disparity, "strength": strength}
    finally:
        for parameter, original in saved.values():
            parameter.data.copy_(original)


def export_streams(model, images: np.ndarray | None, equalise: bool):
    """What an export runs its ONNX step in: `equalised_streams` on the calibration images; told not to
    (`--no-equalise`), a context that changes nothing and reports why; without calibration (a float export),
    one that changes nothing and reports nothing (None)."""
    if images is None:
        return contextlib.nullcontext(None)
    return equalised_streams(model, images) if equalise else contextlib.nullcontext(not_equalised(EQUALISATION_OFF))


def not_equalised(reason: str, min_disparity: float | None = None) -> dict:
    """The report of an export whose streams were left as they are, and why."""
    return {"applicable": False, "disparity": {}, "stages": [], "threshold": min_disparity, "reason": reason}


def _stream_magnitudes(model, images: np.ndarray) -> dict:
    """Per stage (index into backbone.layers), each stream tensor's channels' largest |value| over `images`:
    {stage: [tensors, channels]}, the stage's projections and sums in the order the forward makes them."""
    import torch

    from ..model.backbone import MOBILENETV2_SELECTED
    from .onnx import torch_images

    backbone = model.backbone
    found: dict[tuple[int, int], torch.Tensor] = {}

    def record(key):
        def hook(_module, _inputs, output):
            peak = output.detach().abs().transpose(0, 1).reshape(output.shape[1], -1).amax(1)
            found[key] = torch.maximum(found[key], peak) if key in found else peak
        return hook

    handles = []
    for stage in range(1, max(MOBILENETV2_SELECTED) + 1):  # the stages the forward runs; layers[0] is the stem
        for block in backbone.layers[stage]:
            handles.append(block.conv[-1].register_forward_hook(record((stage, len(handles)))))
            if block.use_residual:
                handles.append(block.register_forward_hook(record((stage, len(handles)))))
    try:
        with torch.no_grad():
            for start in range(0, len(images), BATCH):
                backbone(model.normalise(torch_images(images[start:start + BATCH])))
    finally:
        for handle in handles:
            handle.remove()
    stages = sorted({stage for stage, _ in found})
    return {stage: torch.stack([found[key] for key in sorted(found) if key[0] == stage]) for stage in stages}


def _rescale_stream(model, stage: int, scale, saved: dict) -> None:
    """Divide the stream's channels by `scale` at its producers, multiply its readers' input weights by it; every
    producer and reader is checked against the stream's layout before any weight changes."""
    from ..model.backbone import MOBILENETV2_SELECTED

    backbone = model.backbone
    blocks = list(backbone.layers[stage])
    producers = [block.conv[-1] for block in blocks]
    readers = [block.conv[0][0] for block in blocks[1:]]
    if stage + 1 < len(backbone.layers) - 1:
        readers.append(backbone.layers[stage + 1][0].conv[0][0])
    if stage in MOBILENETV2_SELECTED:
        laterals = model.fpn_phase_1.lat_layers
        readers.append(laterals[len(laterals) - 1 - MOBILENETV2_SELECTED.index(stage)])
    for norm in producers:
        if norm.num_features != scale.numel():
            raise ExportError(f"stream equalisation: unexpected producer of stage {stage}: {norm}")
    for conv in readers:
        if conv.groups != 1 or conv.kernel_size != (1, 1) or conv.in_channels != scale.numel():
            raise ExportError(f"stream equalisation: unexpected reader of stage {stage}: {conv}")
    for norm in producers:
        _scale(norm.weight, 1 / scale, saved)
        _scale(norm.bias, 1 / scale, saved)
    for conv in readers:
        _scale(conv.weight, scale.view(1, -1, 1, 1), saved)


def _scale(parameter, factor, saved: dict) -> None:
    key = id(parameter)
    if key not in saved:
        saved[key] = (parameter, parameter.data.clone())
    parameter.data.mul_(factor)


def _outputs(model, images: np.ndarray) -> dict:
    """{name: tensor}: the image outputs on `images`; a video model's also its warped frame's on the second image,
    from the first's memory (the flow net reads the stream through the lateral too)."""
    import torch

    from .onnx import torch_images

    names = ("boxes", "scores", "masks", "protos")
    x = torch_images(images)
    with torch.no_grad():
        outputs = dict(zip(names, model(x)))
        if model.config.video and len(x) > 1:
            _, memory = model.key_frame(x[:1])
            outputs |= {f"warped-frame {n}": t for n, t in zip(names, model.warped_frame(x[1:2], memory))}
    return outputs


def _check_unchanged(equalised: dict, reference: dict) -> None:
    """The equalised model's float outputs against the original's: they must not move."""
    for name in reference:
        a, b = equalised[name], reference[name]
        error = float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))
        if error > FLOAT_TOLERANCE:
            raise ExportError(f"stream equalisation changed the float {name} by {error:.2e} (relative); "
                              "report this model")
