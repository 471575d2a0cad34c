"""Training the temporal modules in the original's two video stages.

    from yolactedge.train.video import train_video
    flow = train_video("data/vid", weights="demo", stage="flow", iters=300, out_dir="runs/flow")
    warp = train_video("data/vid", weights=flow, stage="warp", iters=300, out_dir="runs/warp")

* Stage "flow": only `flow_net` and `flow_net_pre_convs` learn. On a pair (key frame, current frame `gap`
  frames later) the key frame's phase-1 P4 and P5, warped by the predicted flow and modulated by its scale and
  bias, should match the current frame's own P4 and P5 (full backbone + FPN phase 1, no gradient). The
  original trains this stage on FlyingChairs with ground-truth flow; here the supervision is its feature-
  matching loss (`feature_matching_loss`), which needs nothing but the videos. The match is taken before SPA:
  SPA does not learn in this stage, and from an image checkpoint it is still untrained.
  A model that carries prototypes (ours, `ModelConfig.carry_protos`) also learns, as loss "P", to move the
  key frame's prototypes onto the current frame's with its P4-level flow, the way its warped frames use it.
* Stage "warp": the original's fine_tune_layers (WARP_MODULES) learn, the backbone and FPN phase 1 stay
  frozen. The loss is YolactLoss on the warped frame's outputs plus the feature-matching loss on the P4 and P5
  that FPN phase 2 receives (after SPA), as the original's `extra_loss` 'W', plus YolactLoss on the current
  frame computed as a key frame (the original's base_backward, 'K').

Frozen modules run in eval mode (BatchNorm statistics untouched) and their parameters are left out of the
optimizer, so they stay bit-identical. The checkpoint is a video model in the official layout (`last.pth` +
sidecar), loadable by `load_model`.
"""
from __future__ import annotations

import dataclasses
import os
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import ModelConfig
from ..model.build import build_model, with_config
from ..model.checkpoint import (
    VIDEO_ONLY_PREFIXES,
    infer_config,
    load_state_dict_into,
    read_sidecar,
    read_state_dict,
)
from ..model.protonet import prototypes
from ..model.temporal import FlowPrediction, carry_prototypes, transfer
from ..model.upsample import upsample_bilinear
from ..model.yolact import YolactEdge
from .health import HealthCheck, SkipStreak, TrainingDiverged
from .loss import YolactLoss
from .runlog import Averages, RunLog
from .schedule import Schedule, make_optimizer, set_lr
from .settings import DEFAULTS
from .state import LAST_NAME, claim_run_folder, save_model, seed_everything
from .video_data import FramePairs, check_video_dataset

STAGES = ("flow", "warp")
FLOW_MODULES = ("flow_net", "flow_net_pre_convs")
WARP_MODULES = ("flow_net", "flow_net_pre_convs", "spa", "fpn_phase_2", "proto_net", "prediction_layers",
                "semantic_seg_conv")
TRAINED_MODULES = {"flow": FLOW_MODULES, "warp": WARP_MODULES}
VIDEO_PRESET_OF_BACKBONE = {"mobilenetv2": "yolact_edge_vid_mobilenetv2", "resnet50": "yolact_edge_vid_resnet50",
                            "resnet101": "yolact_edge_vid"}


def feature_matching_loss(predicted: list[torch.Tensor], target: list[torch.Tensor], model: YolactEdge) -> torch.Tensor:
    """The original's cosine feature-matching loss, fm_loss_loc 'L+P': mean over pairs of mean(1 − cos) along
    channels, for P4 and P5 as they are ('L') and after an FPN phase-2 smoothing conv with frozen weights and
    ReLU ('P'). As in the original, P4 goes through pred_layers[1] (its own) and P5 through pred_layers[2]
    (P3's: the layers are stored deepest first and the original indexes them level + 1)."""
    pairs = []
    for level, (pred, goal) in enumerate(zip(predicted, target)):
        layer = model.fpn_phase_2.pred_layers[level + 1]
        pairs += [(pred, goal), (_frozen_smoothing(pred, layer), _frozen_smoothing(goal, layer))]
    return sum((1 - F.cosine_similarity(p, g, dim=1)).mean() for p, g in pairs) / len(pairs)


def _frozen_smoothing(x: torch.Tensor, layer: torch.nn.Conv2d) -> torch.Tensor:
    """ReLU(layer(x)) with the layer's weights detached: the loss must not train FPN phase 2 through them."""
    return F.relu(F.conv2d(x, layer.weight.detach(), layer.bias.detach(), padding=layer.padding))


def video_config(image_config: ModelConfig) -> ModelConfig:
    """The video preset of the checkpoint's backbone with the checkpoint's classes, widths and input size."""
    if image_config.video:
        return image_config
    return dataclasses.replace(image_config, name=VIDEO_PRESET_OF_BACKBONE[image_config.backbone], video=True)


def init_temporal_modules(model: YolactEdge) -> None:
    """Fresh flow net and pre-convs as the original initialises them: Xavier convs, zero biases, except the scale
    branch's bias of 1 so that the first warps keep the key frame's feature magnitudes.

    SPA starts at zero, which makes it the identity (P + LeakyReLU(0)); ours, not the original's Xavier start.
    The flow stage never trains SPA, so a random one would start the warp stage by adding noise to every warped
    P4 and P5 instead of refining them (from the demo model, the warp stage's first logged feature-matching loss
    after SPA was 0.17 with a random SPA and 0.06 with the identity).
    """
    for module in (model.flow_net, model.flow_net_pre_convs):
        for conv in module.modules():
            if isinstance(conv, torch.nn.Conv2d):
                torch.nn.init.xavier_uniform_(conv.weight)
                if conv.bias is not None:
                    torch.nn.init.zeros_(conv.bias)
    for prediction in model.flow_net.modules():
        if isinstance(prediction, FlowPrediction):
            torch.nn.init.ones_(prediction.scale.bias)
    for parameter in model.spa.parameters():
        torch.nn.init.zeros_(parameter)


def load_start_model(weights: str | os.PathLike, log, input_size: int | None = None) -> tuple[YolactEdge, bool]:
    """A video model from an image or a video checkpoint, at `input_size` if given (anchors follow) → (model,
    whether its flow net was trained)."""
    from ..assets import resolve_model_path

    path = resolve_model_path(weights)
    state_dict = read_state_dict(path)
    config = read_sidecar(path) or infer_config(state_dict)
    has_flow = any(k.startswith(VIDEO_ONLY_PREFIXES) for k in state_dict)
    model = build_model(video_config(config), input_size=input_size)
    if has_flow:
        load_state_dict_into(model, state_dict)
        return model, True
    image_model = YolactEdge(dataclasses.replace(model.config, video=False))
    load_state_dict_into(image_model, state_dict)
    model.load_state_dict(image_model.state_dict(), strict=False)
    init_temporal_modules(model)
    log(f"{path.name} is an image checkpoint: built {model.config.name} ({model.config.num_classes - 1} classes, "
        f"input {model.config.input_size}) with its weights; flow net, pre-convs and SPA freshly initialised")
    return model, False


def freeze_for_stage(model: YolactEdge, stage: str) -> list[torch.nn.Parameter]:
    """Eval mode and no gradient everywhere but the stage's modules → the parameters the optimizer gets."""
    model.eval()
    params = []
    for name, child in model.named_children():
        trained = name in TRAINED_MODULES[stage]
        child.train(trained)
        for p in child.parameters():
            p.requires_grad_(trained)
            if trained:
                params.append(p)
    return params


def frozen_phase_1(model: YolactEdge, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Phase-1 [P3, P4, P5] and the C3 lateral of frames through the frozen backbone and FPN phase 1."""
    with torch.no_grad():
        return model.fpn_phase_1.with_finest_lateral(model.backbone(model.normalise(x)))


def transferred_p4_p5(model: YolactEdge, key_phase_1, key_lateral,
                      lateral) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The key frame's P4 and P5 warped to the current frame, scaled and biased (before SPA), as warped_frame
    computes them, with gradients through the pre-convs on both frames as the original trains them; and the
    P4-level flow."""
    level2, level3 = model.flow_net(model.flow_net_pre_convs(lateral), model.flow_net_pre_convs(key_lateral))
    return [transfer(level2, key_phase_1[1]), transfer(level3, key_phase_1[2])], level2.flow


def carried_prototype_loss(model: YolactEdge, key_phase_1, target, flow: torch.Tensor) -> torch.Tensor:
    """Mean |carried − current| / mean |current| over the prototypes of the frozen FPN phase 2 and protonet: the
    key frame's carried by `flow` (as a warped frame of a model that carries them) against the current frame's."""
    with torch.no_grad():
        key_proto, current = (prototypes(model.proto_net, model.fpn_phase_2(p)[0]) for p in (key_phase_1, target))
    return (carry_prototypes(key_proto, flow) - current).abs().mean() / current.abs().mean().clamp_min(1e-6)


def stage_losses(model: YolactEdge, stage: str, keys, currents, targets, loss_fn) -> dict[str, torch.Tensor]:
    """Stage "flow": {"W"}. Stage "warp": YolactLoss's terms on the warped frame, "W" after SPA, and "K", the
    total YolactLoss of the current frame's own (key-frame) outputs: the original's base_backward, which keeps
    the heads that warped and key frames share good on key frames."""
    key_phase_1, key_lateral = frozen_phase_1(model, keys)
    target, lateral = frozen_phase_1(model, currents)
    (p4, p5), flow = transferred_p4_p5(model, key_phase_1, key_lateral, lateral)
    if stage == "flow":
        losses = {"W": feature_matching_loss([p4, p5], target[1:], model)}
        if model.config.carry_protos:
            losses["P"] = carried_prototype_loss(model, key_phase_1, target, flow)
        return losses
    p3 = upsample_bilinear(p4, lateral.shape[-2:]) + lateral
    p4, p5 = model.spa(lateral, p4, p5)
    losses = loss_fn(model.forward_train_from_phase_1([p3, p4, p5]), targets)
    key_frame_losses = loss_fn(model.forward_train_from_phase_1(target), targets)
    return {**losses, "K": sum(key_frame_losses.values()), "W": feature_matching_loss([p4, p5], target[1:], model)}


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise ValueError(f"unknown video stage {stage!r}; use flow (train the flow net) or warp (fine-tune warping)")


def train_video(
    data: str | os.PathLike,
    *,
    weights: str | os.PathLike = "demo",
    stage: str = "flow",
    iters: int = 1000,
    batch_size: int = 4,
    lr: float = 2e-4,
    optimizer_name: str = "sgd",
    max_gap: int = 5,
    input_size: int | None = None,
    out_dir: str | os.PathLike = "runs/train_video",
    exist_ok: bool = False,
    save_every: int = 200,
    log_every: int = 20,
    seed: int = 0,
    threads: int | None = None,
    device: str | torch.device | None = None,
    carry_protos: bool | None = None,
) -> Path:
    """Train one video stage on a YouTube-VIS dataset (`data`: its folder or annotations.json) starting from
    `weights` (an image or a video checkpoint, or "demo"); return the saved `out_dir/last.pth`.
    input_size overrides the checkpoint's (the weights do not depend on it). carry_protos overrides whether the
    model carries prototypes to warped frames (ours; the flow stage then also trains for it, loss "P").

    The classes are the checkpoint's: the dataset's must be the same (stage "warp" uses its labels). lr 2e-4
    is the original's video lr; max_gap: the largest distance from key frame to current frame. The schedule,
    health checks and atomic saving are the image trainer's (`schedule.py`, `health.py`, `state.py`).
    """
    _check_stage(stage)
    check_video_dataset(data)  # before the model is built: a wrong dataset is the cheapest mistake to report
    out = Path(out_dir)
    runlog = RunLog(out, True)
    if threads:
        torch.set_num_threads(threads)
    seed_everything(seed)
    model, flow_trained = load_start_model(weights, runlog.print, input_size)
    if carry_protos is not None and carry_protos != model.config.carry_protos:
        model = with_config(model, carry_protos=carry_protos)
    if stage == "warp" and not flow_trained:
        warnings.warn(f"{weights}: its flow net was never trained; run --video-stage flow first, or the warped "
                      f"frames start from an untrained flow", stacklevel=2)
    pairs = FramePairs(data, model.config.input_size, max_gap=max_gap, seed=seed)
    if stage == "warp" and pairs.class_names != model.config.class_names:
        raise ValueError(f"{pairs.annotation_file}: classes {list(pairs.class_names)} differ from the model's "
                         f"{list(model.config.class_names)}; stage warp trains on the model's classes")
    claim_run_folder(out, resume=False, exist_ok=exist_ok)
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(dev)
    run = VideoRun(model, stage, pairs, Schedule.create(iters, lr), batch_size, optimizer_name, runlog, dev)
    runlog.print(f"video stage {stage}: training {', '.join(TRAINED_MODULES[stage])} on {pairs.num_frames} frames "
                 f"of {len(pairs.videos)} videos from {pairs.annotation_file}; {iters} iterations × {batch_size} "
                 f"pairs on {dev}, {run.schedule.describe()}")
    return run.fit(out, save_every=save_every, log_every=max(1, log_every))


class VideoRun:
    """The loop of one video stage: step, log, health check, save."""

    def __init__(self, model: YolactEdge, stage: str, pairs: FramePairs, schedule: Schedule, batch_size: int,
                 optimizer_name: str, runlog: RunLog, device: torch.device) -> None:
        self.model, self.stage, self.pairs, self.schedule = model, stage, pairs, schedule
        self.batch_size, self.runlog, self.device = batch_size, runlog, device
        self.params = freeze_for_stage(model, stage)
        self.optimizer = make_optimizer(optimizer_name, self.params, schedule.lr_at(0), DEFAULTS["momentum"],
                                        DEFAULTS["weight_decay"])
        self.loss_fn = YolactLoss(model.config.num_classes)
        self.health, self.skips = HealthCheck(model), SkipStreak()

    def step(self, iteration: int) -> dict[str, float]:
        """One optimizer step (skipped when the gradients are not finite) → the losses and their total T."""
        set_lr(self.optimizer, self.schedule.lr_at(iteration))
        keys, currents, targets = self.pairs.batch(iteration, self.batch_size)
        losses = stage_losses(self.model, self.stage, keys.to(self.device), currents.to(self.device), targets,
                              self.loss_fn)
        self.optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        norm = torch.nn.utils.clip_grad_norm_(self.params, float("inf"))
        taken = bool(torch.isfinite(norm))
        if taken:
            self.optimizer.step()
        values = {k: float(v.detach()) for k, v in losses.items()}
        values["T"] = sum(values.values())
        problem = self.health.problem(values)
        if problem is not None:
            raise TrainingDiverged(f"video stage {self.stage} diverged at iteration {iteration + 1}: {problem}; "
                                   f"lower --lr")
        warning = self.skips.record(taken, iteration + 1)
        if warning is not None:
            self.runlog.warn(warning)
        return values

    def save(self, path: Path, iteration: int, losses: dict[str, float]) -> None:
        save_model(self.model, path, iteration, self.schedule.max_iter, losses, video_stage=self.stage)

    def fit(self, out: Path, *, save_every: int, log_every: int) -> Path:
        averages, values, started = Averages(), {}, time.perf_counter()
        for iteration in range(1, self.schedule.max_iter + 1):
            values = self.step(iteration - 1)
            averages.add(values)
            if iteration % log_every == 0 or iteration == self.schedule.max_iter:
                mean, seconds = averages.mean(), max(time.perf_counter() - started, 1e-9)
                record = {"iteration": iteration, "lr": self.schedule.lr_at(iteration - 1),
                          **{k: round(v, 5) for k, v in mean.items()},
                          "pairs_per_s": round(averages.count * self.batch_size / seconds, 2)}
                self.runlog.train_interval(record, mean, self.schedule.max_iter)
                averages, started = Averages(), time.perf_counter()
            if iteration % save_every == 0 and iteration < self.schedule.max_iter:
                self.save(out / LAST_NAME, iteration, values)
        self.save(out / LAST_NAME, self.schedule.max_iter, values)
        self.runlog.print(f"done: video stage {self.stage}, {self.schedule.max_iter} iterations → {out / LAST_NAME}")
        return out / LAST_NAME
