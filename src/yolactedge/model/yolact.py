"""YOLACT-Edge: backbone → split FPN → protonet + shared head → the four raw outputs of the model card."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..config import PIXEL_MEAN, PIXEL_STD, ModelConfig
from .backbone import build_backbone
from .fpn import FPNPhase1, FPNPhase2
from .head import PredictionHead
from .priors import VARIANCES, make_priors
from .protonet import build_protonet, prototypes
from .temporal import (
    SPA, FlowNetMini, FlowPreConvs, TemporalMemory, VideoModeError, carry_prototypes, check_memory, warped_phase_1,
)


class TrainOutputs(NamedTuple):
    """What the loss needs. A anchors, K classes with background, P prototypes."""

    loc: torch.Tensor  # [N, A, 4] raw box regressions
    conf: torch.Tensor  # [N, A, K] class logits
    coef: torch.Tensor  # [N, A, P] tanh mask coefficients
    priors: torch.Tensor  # [A, 4] cx, cy, w, h
    proto: torch.Tensor  # [N, Hp, Wp, P] prototypes after ReLU
    segm: torch.Tensor  # [N, K-1, H3, W3] semantic segmentation logits


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor, level_counts: list[int] | None = None) -> torch.Tensor:
    """loc [N, A, 4] + priors [A, 4] cx,cy,w,h → [N, A, 4] normalised x1, y1, x2, y2 (never clamped).

    Each corner comes from the centre and the half size on its own (not x2 = x1 + w): an int8 export quantizes
    the boxes over the image, and a top-left corner saturated at 0 must not drag the far corner with it.
    level_counts (anchors per pyramid level, in order) decodes each level on its own and concatenates the boxes:
    in int8 every intermediate then gets its level's range instead of one range spanning P3's 24-pixel anchors
    and P7's whole image. The anchor centres are added last, to both corners at once, so the only rounding on
    the image-wide grid is the output's (docs/int8-accuracy.md).
    """
    if level_counts is not None and len(level_counts) > 1:
        levels = zip(loc.split(level_counts, dim=1), priors.split(level_counts, dim=0))
        return torch.cat([_decode_level(level_loc, level_priors) for level_loc, level_priors in levels], dim=1)
    return _decode_level(loc, priors)


def _decode_level(loc: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    shifts = loc[..., :2] * (VARIANCES[0] * priors[:, 2:])
    half_sizes = torch.exp(loc[..., 2:] * VARIANCES[1]) * (priors[:, 2:] / 2)
    centres = torch.cat((priors[:, :2], priors[:, :2]), dim=-1)
    return torch.cat((shifts - half_sizes, shifts + half_sizes), dim=-1) + centres


Outputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class YolactEdge(nn.Module):
    """Input float32 [N, 3, H, W] RGB 0..255; normalisation happens inside, so exported models take raw pixels.

    With `config.video` the model also has the original's temporal modules: `key_frame` / `warped_frame` run a
    video, `forward` stays the single-image path (which is what a key frame computes).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        # Registration order reproduces the original state_dict key order.
        self.backbone = build_backbone(config.backbone)
        self.proto_net = build_protonet(config.fpn_channels, config.proto_channels, config.mask_dim)
        self.fpn_phase_1 = FPNPhase1(self.backbone.out_channels, config.fpn_channels)
        self.fpn_phase_2 = FPNPhase2(config.fpn_channels)
        if config.video:
            self.spa = SPA(config.fpn_channels)
            self.flow_net_pre_convs = FlowPreConvs(config.fpn_channels)
            self.flow_net = FlowNetMini(config.fpn_channels)
        self.prediction_layers = nn.ModuleList(
            [PredictionHead(config.fpn_channels, config.num_classes, config.num_anchors, config.mask_dim)]
        )
        self.semantic_seg_conv = nn.Conv2d(config.fpn_channels, config.num_classes - 1, 1)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)
        self._priors: dict[tuple, torch.Tensor] = {}

    def priors_for(self, features: list[torch.Tensor]) -> torch.Tensor:
        sizes = tuple(tuple(f.shape[-2:]) for f in features)
        if sizes not in self._priors:
            c = self.config
            self._priors[sizes] = torch.from_numpy(make_priors(list(sizes), c.pred_scales, c.aspect_ratios, c.input_size))
        return self._priors[sizes]

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.pixel_mean) / self.pixel_std

    def _features(self, x: torch.Tensor):
        return self._predict(self.fpn_phase_2(self.fpn_phase_1(self.backbone(self.normalise(x)))))

    def _predict(self, pyramid: list[torch.Tensor], proto: torch.Tensor | None = None):
        """P3..P7 → the pyramid, raw head outputs, priors and prototypes (the protonet's, unless `proto` is given)."""
        head = self.prediction_layers[0]
        loc, conf, coef = (torch.cat(parts, dim=1) for parts in zip(*(head(p) for p in pyramid)))
        priors = self.priors_for(pyramid).to(pyramid[0].device)
        return pyramid, loc, conf, coef, priors, prototypes(self.proto_net, pyramid[0]) if proto is None else proto

    @staticmethod
    def _outputs(features) -> Outputs:
        pyramid, loc, conf, coef, priors, proto = features
        scores = torch.softmax(conf, dim=-1)[..., 1:].transpose(1, 2)
        cells = [level.shape[-2] * level.shape[-1] for level in pyramid]
        anchors_per_cell = priors.shape[0] // sum(cells)
        return decode_boxes(loc, priors, [n * anchors_per_cell for n in cells]), scores, coef, proto

    def forward(self, x: torch.Tensor) -> Outputs:
        """→ boxes [N, A, 4] x1y1x2y2, scores [N, K-1, A] (softmax, background dropped), masks [N, A, P], proto."""
        return self._outputs(self._features(x))

    def key_frame(self, x: torch.Tensor) -> tuple[Outputs, TemporalMemory]:
        """A video key frame: exactly `forward(x)`'s outputs, plus the memory the following warped frames need."""
        self._require_video("key_frame")
        c3, c4, c5 = self.backbone(self.normalise(x))
        phase_1, lateral = self.fpn_phase_1.with_finest_lateral([c3, c4, c5])
        outputs = self._outputs(self._predict(self.fpn_phase_2(phase_1)))
        memory = TemporalMemory(
            key_p4=phase_1[1].detach(),
            key_p5=phase_1[2].detach(),
            key_flow_features=self.flow_net_pre_convs(lateral).detach(),
            image_shape=(x.shape[0], *x.shape[-2:]),
            model_id=id(self),
            key_proto=outputs[3].detach() if self.config.carry_protos else None,
        )
        return outputs, memory

    def warped_frame(self, x: torch.Tensor, memory: TemporalMemory | None) -> Outputs:
        """A non-key frame: backbone up to C3 only, P4/P5 warped from the key frame's memory, then as an image.

        With `config.carry_protos` (ours) the key frame's prototypes are warped too and the protonet is skipped.
        """
        self._require_video("warped_frame")
        carry = self.config.carry_protos
        memory = check_memory(memory, x, id(self), carry)
        lateral = self.fpn_phase_1.lat_layers[-1](self.backbone.forward_c3(self.normalise(x)))
        phase_1, flow = warped_phase_1(lateral, memory, self.flow_net, self.flow_net_pre_convs, self.spa)
        proto = carry_prototypes(memory.key_proto, flow) if carry else None
        return self._outputs(self._predict(self.fpn_phase_2(phase_1), proto))

    def _require_video(self, method: str) -> None:
        if not self.config.video:
            raise VideoModeError(
                f"{method}: {self.config.name} is an image model without the flow net; "
                "use a video preset (yolact_edge_vid, yolact_edge_vid_resnet50, yolact_edge_vid_mobilenetv2) "
                "or load a video checkpoint"
            )

    def forward_train(self, x: torch.Tensor) -> TrainOutputs:
        pyramid, loc, conf, coef, priors, proto = self._features(x)
        return TrainOutputs(loc, conf, coef, priors, proto, self.semantic_seg_conv(pyramid[0]))

    def forward_train_from_phase_1(self, phase_1: list[torch.Tensor]) -> TrainOutputs:
        """What the loss needs from phase-1 [P3, P4, P5]: video training feeds a warped frame's features here."""
        pyramid, loc, conf, coef, priors, proto = self._predict(self.fpn_phase_2(phase_1))
        return TrainOutputs(loc, conf, coef, priors, proto, self.semantic_seg_conv(pyramid[0]))
