"""YOLACT-Edge's temporal feature transfer (video mode), computed exactly as the original implementation does.

A key frame runs the whole image model and leaves a `TemporalMemory`: its phase-1 P4 and P5 and its flow-net
features. A non-key ("warped") frame runs only the backbone up to C3, predicts flow, scale and bias between the two
frames with FlowNetMini, warps the key frame's P4 and P5 with that flow, rebuilds P3 from the warped P4 and its own
C3 lateral, refines P4 and P5 with SPA, and then runs FPN phase 2, the protonet and the head as an image would.

Module and parameter names reproduce the original's state_dict keys (`flow_net.*`, `flow_net_pre_convs.*`,
`spa.*`), so official video checkpoints load unchanged. Facts and line numbers: the project's video-facts notes.

Ours, not the original's (`ModelConfig.carry_protos`, off by default): the key frame's memory also keeps its
prototypes, and a warped frame warps them with its P4-level flow instead of running the protonet.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..keyframes import is_key_frame
from .upsample import upsample_bilinear

# The original's flow.encode_channels and flow.reduce_channels[-1] in every video config.
FLOW_WIDTH = 64
LEAKY_SLOPE = 0.1


class VideoModeError(ValueError):
    """The video API used in a way that cannot work; the message says in one line what to do instead."""


def conv_lrelu(in_ch: int, out_ch: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv with bias then LeakyReLU(0.1): index 0 holds the weights, as the original's keys expect."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, stride, 1), nn.LeakyReLU(LEAKY_SLOPE))


class FlowPreConvs(nn.Module):
    """Reduces a C3 lateral (FPN width) to the flow net's width; applied to the current and the key frame alike."""

    def __init__(self, fpn_channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(conv_lrelu(fpn_channels, FLOW_WIDTH))

    def forward(self, lateral: torch.Tensor) -> torch.Tensor:
        return self.convs(lateral)


class FlowLevel(NamedTuple):
    """One pyramid level's transfer: warp by `flow` [N, 2, h, w], then multiply by `scale` and add `bias`."""

    flow: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor


class FlowPrediction(nn.Module):
    """Flow (3x3, no bias, 2 channels), scale and bias (1x1, FPN width) from one level's flow features."""

    def __init__(self, in_ch: int, fpn_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, 2, 3, padding=1, bias=False)
        self.scale = nn.Conv2d(in_ch, fpn_channels, 1)
        self.bias = nn.Conv2d(in_ch, fpn_channels, 1)

    def forward(self, x: torch.Tensor) -> FlowLevel:
        return FlowLevel(self.conv(x), self.scale(x), self.bias(x))


class FlowNetMini(nn.Module):
    """The original's FlowNetMini: three strided stages (C3, C4, C5 resolution), coarse-to-fine prediction.

    Only the P4 and P5 levels are used for warping. The C3-level head (`pred1`, `upfeat2`, `upflow2`) is in every
    official checkpoint, so it is built, but it is never run: the original's eval path drops its output too.
    """

    def __init__(self, fpn_channels: int) -> None:
        super().__init__()
        c = FLOW_WIDTH
        self.conv1 = nn.Sequential(conv_lrelu(2 * c, c), conv_lrelu(c, c))
        self.conv2 = nn.Sequential(conv_lrelu(c, 2 * c, stride=2), conv_lrelu(2 * c, 2 * c))
        self.conv3 = nn.Sequential(conv_lrelu(2 * c, 4 * c, stride=2), conv_lrelu(4 * c, 4 * c))
        self.pred3 = FlowPrediction(4 * c, fpn_channels)
        self.pred2 = FlowPrediction(4 * c + 2, fpn_channels)
        self.pred1 = FlowPrediction(2 * c + 2, fpn_channels)
        self.upfeat3 = nn.Conv2d(4 * c, 2 * c, 3, padding=1, bias=False)
        self.upflow3 = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.upfeat2 = nn.Conv2d(4 * c + 2, c, 3, padding=1, bias=False)
        self.upflow2 = nn.Conv2d(2, 2, 3, padding=1, bias=False)

    def forward(self, current: torch.Tensor, key: torch.Tensor) -> tuple[FlowLevel, FlowLevel]:
        """Pre-conv'd laterals of the current and the key frame (in that order) → (P4 level, P5 level).

        The coarse flow is resized to the finer level without being doubled, as in the original.
        """
        out1 = self.conv1(torch.cat((current, key), dim=1))
        out2 = self.conv2(out1)
        out3 = self.conv3(out2)
        level3 = self.pred3(out3)
        size2 = out2.shape[-2:]
        up_feat = self.upfeat3(upsample_bilinear(out3, size2))
        up_flow = self.upflow3(upsample_bilinear(level3.flow, size2))
        level2 = self.pred2(torch.cat((out2, up_feat, up_flow), dim=1))
        return level2, level3


class SPA(nn.Module):
    """Refines warped P4 and P5 with the current frame's C3 lateral: P' = P + refine(cat(P, lateral resized))."""

    def __init__(self, fpn_channels: int) -> None:
        super().__init__()
        self.refine_convs = nn.ModuleList(conv_lrelu(2 * fpn_channels, fpn_channels) for _ in range(2))

    def forward(self, lateral: torch.Tensor, p4: torch.Tensor, p5: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The lateral is resized in a chain (C3 → P4 size → P5 size), never directly to P5's size."""
        refined = []
        for refine, feature in zip(self.refine_convs, (p4, p5)):
            lateral = upsample_bilinear(lateral, feature.shape[-2:])
            refined.append(feature + refine(torch.cat((feature, lateral), dim=1)))
        return refined[0], refined[1]


def warp(features: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp as the original's deform_op: out(y, x) = features(y + dy, x + dx), bilinear, zeros outside.

    The flow is in units of 1/8 of the normalised [-1, 1] grid: dx = flow_x·(w−1)/16, dy = flow_y·(h−1)/16 pixels.
    The grid is built in float32 in the original's order (pixel grid × 2/(size−1), − 1, + flow/8), so the result
    matches it bit for bit.
    """
    n, _, h, w = flow.shape
    if features.shape[-2:] != flow.shape[-2:]:
        raise ValueError(f"flow {tuple(flow.shape[-2:])} and features {tuple(features.shape[-2:])} differ in size")
    if h < 2 or w < 2:
        raise ValueError(f"cannot warp a {h}x{w} map: both sides must be at least 2")
    xs = torch.arange(w, dtype=torch.float32, device=flow.device).view(1, -1).expand(h, -1)
    ys = torch.arange(h, dtype=torch.float32, device=flow.device).view(-1, 1).expand(-1, w)
    grid = torch.stack((xs, ys)).unsqueeze(0).expand(n, -1, -1, -1)
    step = torch.tensor([2 / (w - 1), 2 / (h - 1)], dtype=torch.float32, device=flow.device).view(1, 2, 1, 1)
    grid = (grid * step - 1 + flow / 8).permute(0, 2, 3, 1)
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def carry_prototypes(key_proto: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """The key frame's prototypes [N, Hp, Wp, P] (NHWC, as the model outputs them) warped to the current frame.

    The flow is the P4 level's, resized bilinearly to the prototype map: its unit is a fraction of the normalised
    grid, not a pixel, so the resized field moves the prototypes by the same share of the image. No scale and
    bias: they are predicted per FPN channel and the prototypes are another space. Warping keeps the prototypes
    non-negative (bilinear weights and zeros outside), as the protonet's ReLU leaves them.
    """
    proto = key_proto.permute(0, 3, 1, 2)
    return warp(proto, upsample_bilinear(flow, proto.shape[-2:])).permute(0, 2, 3, 1).contiguous()


def transfer(level: FlowLevel, key_feature: torch.Tensor) -> torch.Tensor:
    """Warp then modulate, two separate float32 steps as the original (no fused multiply-add)."""
    return warp(key_feature, level.flow) * level.scale + level.bias


@dataclasses.dataclass(frozen=True)
class TemporalMemory:
    """What a key frame leaves for the frames warped from it.

    No P3: warped frames rebuild it from the warped P4 and their own C3 lateral (the original drops the key P3).
    The original keeps the key frame's lateral and runs the flow pre-conv on it for every warped frame; keeping
    the pre-conv's output instead gives the same numbers, a quarter of the size and one conv less per frame.
    `key_proto` is kept only by a model that carries prototypes (`ModelConfig.carry_protos`, ours).
    """

    key_p4: torch.Tensor  # [N, C, H4, W4] phase-1 P4 of the key frame (before FPN phase 2)
    key_p5: torch.Tensor  # [N, C, H5, W5] phase-1 P5
    key_flow_features: torch.Tensor  # [N, 64, H3, W3] flow_net_pre_convs(lat_layers[-1](C3)) of the key frame
    image_shape: tuple[int, int, int]  # (N, H, W) of the key frame's input
    model_id: int  # id() of the model that made it
    key_proto: torch.Tensor | None = None  # [N, Hp, Wp, P] the key frame's prototypes (its `proto` output)

    def __repr__(self) -> str:
        fields = ("key_p4", "key_p5", "key_flow_features") + (("key_proto",) if self.key_proto is not None else ())
        shapes = ", ".join(f"{f}={tuple(getattr(self, f).shape)}" for f in fields)
        return f"TemporalMemory({shapes}, image_shape={self.image_shape})"


def check_memory(memory: object, x: torch.Tensor, model_id: int, carry_protos: bool = False) -> TemporalMemory:
    """The memory itself if a warped frame of `x` can use it, else a VideoModeError saying what to do."""
    if memory is None:
        raise VideoModeError("warped_frame needs a key frame's memory: call key_frame(x) first and pass its memory")
    if not isinstance(memory, TemporalMemory):
        raise VideoModeError(f"memory must be the TemporalMemory that key_frame returns, got {type(memory).__name__}")
    if memory.model_id != model_id:
        raise VideoModeError("this memory was made by another model: run key_frame on this model to get its own")
    if carry_protos and memory.key_proto is None:
        raise VideoModeError("this model carries prototypes (carry_protos) but the memory holds none: it was made "
                             "before carrying was turned on; run key_frame again")
    shape = (x.shape[0], *x.shape[-2:])
    if tuple(memory.image_shape) != shape:
        raise VideoModeError(
            f"memory comes from a key frame of shape {memory.image_shape} (N, H, W), this frame is {shape}: "
            "run key_frame on a frame of this shape first"
        )
    return memory


def warped_phase_1(
    lateral: torch.Tensor, memory: TemporalMemory, flow_net: FlowNetMini, pre_convs: FlowPreConvs, spa: SPA
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The current frame's C3 lateral + a key frame's memory → (phase-1 [P3, P4, P5] for FPN phase 2, the P4-level
    flow, which carries the prototypes when the model does)."""
    level2, level3 = flow_net(pre_convs(lateral), memory.key_flow_features)
    p4 = transfer(level2, memory.key_p4)
    p5 = transfer(level3, memory.key_p5)
    p3 = upsample_bilinear(p4, lateral.shape[-2:]) + lateral
    p4, p5 = spa(lateral, p4, p5)
    return [p3, p4, p5], level2.flow


class VideoStream:
    """Frame-by-frame inference on the original's schedule: key frames per `is_key_frame`, the frames between
    warped from the latest key frame (only one is kept, and warped frames never feed later ones)."""

    def __init__(self, model: nn.Module, interval: int = 5, phase: int = 0) -> None:
        is_key_frame(0, interval, phase)  # validates the schedule now, not at the first frame
        self.model = model
        self.interval = interval
        self.phase = phase
        self.index = 0
        self.memory: TemporalMemory | None = None

    def __call__(self, frame: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One preprocessed frame [N, 3, H, W] → the model's four outputs."""
        if is_key_frame(self.index, self.interval, self.phase):
            outputs, self.memory = self.model.key_frame(frame)
        else:
            outputs = self.model.warped_frame(frame, self.memory)
        self.index += 1
        return outputs
