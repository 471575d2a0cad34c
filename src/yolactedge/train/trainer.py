"""The training loop as an object: set up, step, validate, save, fit. One process, or several under `torchrun`.

    from yolactedge.train import train
    best = train("data/shapes", config="yolact_edge_demo", iters=3000, batch_size=8, out_dir="runs/demo")

Defaults follow the original: SGD, momentum 0.9, weight decay 5e-4, the schedule of `schedule.py`; BatchNorm
stays in training mode (the original's freeze_bn False). A step whose gradients are not finite is skipped; a
non-finite loss or exploding BatchNorm statistics stop the run (`health.py`). Ctrl-C saves the finished step
and prints the resume command (`interrupt.py`). The files a run writes are described in `state.py`; the
settings a resumed run keeps in `settings.py`.
"""
from __future__ import annotations

import os
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import ModelConfig
from ..model.build import build_model
from ..model.checkpoint import (
    load_backbone_weights,
    load_state_dict_into,
    read_state_dict,
)
from .distributed import (
    DistInfo,
    barrier,
    close_distributed,
    default_threads,
    first_rank_with,
    init_distributed,
    wrap_for_training,
)
from .health import HealthCheck, SkipStreak, TrainingDiverged
from .interrupt import GracefulInterrupt
from .loss import YolactLoss
from .runlog import Averages, RunLog
from .sampling import resolve_data, to_targets, training_loader
from .schedule import make_optimizer, set_lr
from .settings import RunRequest, RunSettings
from .state import (
    BEST_NAME,
    LAST_NAME,
    STATE_NAME,
    claim_run_folder,
    load_train_state,
    rng_state,
    save_model,
    save_train_state,
    seed_everything,
    set_rng_state,
)
from .validation import ValFn, Validator, check_val_classes


@dataclass(frozen=True)
class TrainOptions:
    """Where a run writes, what it starts from and how it is carried out: unlike the RunRequest these are not
    saved in the resume state, so a resumed run may change them (other threads, another validation interval)."""

    out_dir: Path = Path("runs/train")
    resume: bool = False
    exist_ok: bool = False
    weights: str | os.PathLike | None = None
    backbone_weights: str | os.PathLike | None = None
    val_data: str | os.PathLike | None = None
    val_fn: ValFn | None = None
    val_metric: str | None = None
    val_every: int | None = None
    val_limit: int | None = None
    save_every: int | None = None
    log_every: int = 20
    num_workers: int = 0
    threads: int | None = None
    device: str | torch.device | None = None
    progress: bool | None = None


class Trainer:
    """One training run in `options.out_dir`; `fit()` runs it to its last iteration and returns the best
    checkpoint (the last one without validation)."""

    def __init__(self, data: str | os.PathLike, request: RunRequest, options: TrainOptions) -> None:
        if options.weights is not None and options.backbone_weights is not None:
            raise ValueError("give --weights (a whole model) or --backbone-weights (ImageNet backbone), not both")
        self.data, self.request, self.options = data, request, options
        self.out = Path(options.out_dir)

    # ------------------------------------------------------------------------------------------- set-up

    def _setup_device(self) -> None:
        device = self.options.device
        device_type = torch.device(device).type if device is not None else (
            "cuda" if torch.cuda.is_available() else "cpu")
        self.dist: DistInfo = init_distributed(device_type)
        dev = torch.device(device) if device is not None else torch.device(device_type)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(dev)
        self.device = dev
        self.main = self.dist.is_main
        self.runlog = RunLog(self.out, self.main)
        self.log = self.runlog.print
        torch.set_num_threads(self.options.threads or default_threads(self.dist, dev))

    def _setup_settings(self) -> None:
        """Settings of a new run, or the saved ones of a resumed run (state kept for the model set-up)."""
        from ..data import CocoDataset

        image_dir, self.ann_file = resolve_data(self.data)
        self.dataset = CocoDataset(image_dir, self.ann_file, transform=None)
        if self.options.val_data is not None:
            check_val_classes(self.options.val_data, self.dataset.class_names)
        if self.main:
            removed = claim_run_folder(self.out, resume=self.options.resume, exist_ok=self.options.exist_ok)
            if removed:
                self.log(f"replacing the run in {self.out} (removed {', '.join(removed)})")
        state_path = self.out / STATE_NAME
        self.state = load_train_state(state_path) if self.options.resume and state_path.is_file() else None
        if self.state is not None:
            saved = RunSettings.from_state(self.state)
            self.settings, note = self.request.resumed_run(saved, self.dataset.class_names, len(self.dataset),
                                                           self.dist.world_size)
            self.start_iter = int(self.state["iteration"])
            if note:
                self.log(note)
        else:
            self.settings = self.request.new_run(self.dataset.class_names, len(self.dataset), self.dist.world_size)
            self.start_iter = 0
        if self.options.resume and self.state is None:
            self.log(f"resume: no {state_path}, starting from scratch")

    def _setup_model(self) -> None:
        s, state, options = self.settings, self.state, self.options
        seed_everything(s.seed + self.dist.rank)
        self.model = build_model(s.config)
        if state is None and options.weights is not None:
            ignored = load_state_dict_into(self.model, read_state_dict(options.weights), reinit_mismatched=True)
            reinit = [k for k in ignored if k in self.model.state_dict()]
            self.log(f"fine-tuning from {options.weights}"
                     + (f"; re-initialised {len(reinit)} tensors ({', '.join(reinit[:4])})" if reinit else ""))
        elif state is None and options.backbone_weights is not None:
            loaded = load_backbone_weights(self.model, options.backbone_weights)
            self.log(f"backbone initialised from {options.backbone_weights} ({loaded} tensors)")
        self.model.to(self.device).train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(s.optimizer, self.params, s.schedule.lr_at(self.start_iter), s.momentum,
                                        s.weight_decay)
        if state is not None:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.main and "rng" in state:
                set_rng_state(state["rng"])
            else:
                seed_everything(s.seed + self.dist.rank + 7919 * self.start_iter)
            self.log(f"resuming {self.out} at iteration {self.start_iter}/{s.schedule.max_iter}")
        self.net = wrap_for_training(self.model, self.dist, self.device)
        self.health, self.skips = HealthCheck(self.model), SkipStreak()
        self.saved_iteration = self.start_iter if state is not None else None

    def _setup_data(self) -> None:
        from ..data import TrainAugment

        s = self.settings
        self.dataset.transform = TrainAugment(s.config.input_size, seed=s.seed, max_expand=s.max_expand)
        self.loader = training_loader(
            self.dataset, s.batch_size, rank=self.dist.rank, world_size=self.dist.world_size, seed=s.seed,
            start_iter=self.start_iter, num_workers=self.options.num_workers, pin_memory=self.device.type == "cuda")
        self.loss_fn = YolactLoss(s.config.num_classes)
        self.validator = self._make_validator()
        self.save_every = self.options.save_every or 200
        self.val_every = self.options.val_every or self.save_every
        self.log_every = max(1, self.options.log_every)

    def _make_validator(self) -> Validator | None:
        """Rank 0 validates; the others only meet it at the barriers (None when the run has no validation)."""
        from ..data import CocoDataset, EvalTransform, collate

        o = self.options
        if o.val_fn is None and o.val_data is None:
            return None
        loader = None
        if o.val_data is not None and o.val_fn is None and self.main:
            vdir, vann = resolve_data(o.val_data)
            vset = CocoDataset(vdir, vann, transform=EvalTransform(self.settings.config.input_size))
            loader = torch.utils.data.DataLoader(vset, batch_size=self.settings.batch_size, shuffle=False,
                                                 num_workers=o.num_workers, collate_fn=collate)
        best = self.state.get("best") if self.state is not None else None
        return Validator(val_fn=o.val_fn, metric=o.val_metric, loader=loader, loss_fn=self.loss_fn,
                         device=self.device, limit=o.val_limit, best=best)

    def _announce(self) -> None:
        s, dist = self.settings, self.dist
        self.log(f"training {s.config.name} ({s.config.num_classes - 1} classes, input {s.config.input_size}) on "
                 f"{len(self.dataset)} images from {self.ann_file}; {s.schedule.max_iter} iterations × "
                 f"{s.batch_size} images × {dist.world_size} process(es) on {self.device}, "
                 f"{torch.get_num_threads()} threads, {s.schedule.describe()}")
        self.runlog.open_bar(s.schedule.max_iter, self.start_iter, self.options.progress)

    # ---------------------------------------------------------------------------------------- the loop

    def step(self, iteration: int, images, targets) -> tuple[dict[str, float], bool]:
        """One optimizer step at `iteration`: the losses, their total T and the gradient norm, and whether the
        step was taken (False when the gradients were not finite)."""
        set_lr(self.optimizer, self.settings.schedule.lr_at(iteration))
        x = torch.from_numpy(images).to(self.device, non_blocking=True)
        losses = self.loss_fn(self.net(x), to_targets(targets))
        self.optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        clip = self.settings.clip_grad_norm
        norm = torch.nn.utils.clip_grad_norm_(self.params, clip if clip else float("inf"))
        taken = bool(torch.isfinite(norm))
        if taken:
            self.optimizer.step()
        values = {k: float(v.detach()) for k, v in losses.items()}
        values["T"] = sum(values.values())
        return {**values, "grad_norm": float(norm) if taken else 0.0}, taken

    def _log_interval(self, iteration: int, averages: Averages, skipped: int, started: float,
                      data_time: float) -> None:
        mean = averages.mean()
        images = averages.count * self.settings.batch_size * self.dist.world_size
        ips = images / max(time.perf_counter() - started, 1e-9)
        record = {"iteration": iteration, "lr": self.settings.schedule.lr_at(iteration - 1),
                  **{k: round(v, 5) for k, v in mean.items()}, "img_per_s": round(ips, 2),
                  "data_s": round(data_time / max(averages.count, 1), 4), "skipped": skipped}
        self.runlog.train_interval(record, mean, self.settings.schedule.max_iter)

    def validate(self, iteration: int) -> dict[str, float] | None:
        """Validate on rank 0, log the metrics, and keep best.pth when they beat the best so far."""
        if not self.main or self.validator is None:
            return None
        t0 = time.perf_counter()
        metrics, key, improved = self.validator.run(self.model)
        self.runlog.validation({"iteration": iteration, "seconds": round(time.perf_counter() - t0, 2), **metrics})
        if improved:
            save_model(self.model, self.out / BEST_NAME, iteration, self.settings.schedule.max_iter, metrics)
            self.log(f"best {key}={self.validator.best:.4f} at iteration {iteration} → {self.out / BEST_NAME}")
        return metrics

    def save(self, iteration: int, last_losses: Mapping[str, float]) -> None:
        """last.pth for use, last_state.pt for resuming, each written atomically (rank 0 only)."""
        self.saved_iteration = iteration
        if not self.main:
            return
        save_model(self.model, self.out / LAST_NAME, iteration, self.settings.schedule.max_iter, last_losses)
        save_train_state(self.out / STATE_NAME, {
            "iteration": iteration, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            **self.settings.to_state(), "world_size": self.dist.world_size,
            "best": self.validator.best if self.validator is not None else None,
            "rng": rng_state(), "data": str(self.ann_file),
        })

    def _check_health(self, iteration: int, losses: Mapping[str, float], taken: bool) -> None:
        """Stop a diverged run before anything saves its ruined weights; report streaks of skipped steps."""
        problem = self.health.problem(losses)
        bad_rank = first_rank_with(self.dist, problem is not None, self.device)
        if bad_rank is not None:
            if problem is None:
                problem = f"process {bad_rank} of {self.dist.world_size} went bad (its own error line says how)"
            kept = (f"the last good checkpoint {self.out / LAST_NAME} (iteration {self.saved_iteration}) is kept"
                    if self.saved_iteration is not None else "no checkpoint had been saved yet")
            raise TrainingDiverged(f"training diverged at iteration {iteration}: {problem}; {kept}; "
                                   f"lower --lr or add --clip-grad")
        warning = self.skips.record(taken, iteration)
        if warning is not None:
            self.runlog.warn(warning)

    def _run_loop(self) -> tuple[int, dict[str, float]]:
        """Steps from start_iter to max_iter with logging, saving and validation on their intervals."""
        max_iter = self.settings.schedule.max_iter
        averages, last_losses, skipped = Averages(), {}, 0
        started, data_time = time.perf_counter(), 0.0
        batches = iter(self.loader)
        iteration = self.start_iter
        while iteration < max_iter:
            t_data = time.perf_counter()
            images, targets = next(batches)
            data_time += time.perf_counter() - t_data
            values, taken = self.step(iteration, images, targets)
            iteration += 1
            skipped += not taken
            last_losses = {k: v for k, v in values.items() if k != "grad_norm"}
            self._check_health(iteration, last_losses, taken)
            averages.add(values)
            self.runlog.advance()
            if iteration % self.log_every == 0 or iteration == max_iter:
                self._log_interval(iteration, averages, skipped, started, data_time)
                averages, started, data_time = Averages(), time.perf_counter(), 0.0
            if iteration % self.save_every == 0 and iteration < max_iter:
                self.save(iteration, last_losses)
            if self.validator is not None and iteration % self.val_every == 0 and iteration < max_iter:
                self.validate(iteration)
                barrier(self.dist)
            if self.interrupt.requested and iteration < max_iter:
                self._stop_on_interrupt(iteration, last_losses)
        return iteration, last_losses

    def _stop_on_interrupt(self, iteration: int, last_losses: Mapping[str, float]) -> None:
        """Save the finished step (atomically, as every save) and say how to go on; KeyboardInterrupt then
        ends the run as Ctrl-C would (the CLI exits 130)."""
        self.save(iteration, last_losses)
        command = shlex.join(self.resume_command())
        self.log(f"interrupted at iteration {iteration}/{self.settings.schedule.max_iter}: saved "
                 f"{self.out / LAST_NAME} and {self.out / STATE_NAME}; resume with: {command}")
        raise KeyboardInterrupt

    def resume_command(self) -> list[str]:
        """The command line that continues this run: every run-defining setting comes from the saved state."""
        command = ["yolactedge", "train", "--data", str(self.data), "--out", str(self.out), "--resume"]
        o = self.options
        for flag, value in (("--val-data", o.val_data), ("--val-every", o.val_every), ("--val-limit", o.val_limit)):
            if value is not None:
                command += [flag, str(value)]
        return command

    def fit(self) -> Path:
        """Set up, train to the last iteration, save and validate; the best checkpoint (last without validation)."""
        self._setup_device()
        try:
            self._setup_settings()
            self._setup_model()
            self._setup_data()
            self._announce()
            try:
                with GracefulInterrupt(enabled=self.dist.world_size == 1) as self.interrupt:
                    iteration, last_losses = self._run_loop()
            finally:
                self.runlog.close_bar()
            return self._finish(iteration, last_losses)
        finally:
            close_distributed(self.dist)

    def _finish(self, iteration: int, last_losses: Mapping[str, float]) -> Path:
        if iteration > self.start_iter or not (self.out / LAST_NAME).is_file():
            self.save(iteration, last_losses)
        if self.validator is not None:
            self.validate(iteration)
        barrier(self.dist)
        validated = self.validator is not None and (self.out / BEST_NAME).is_file()
        result = self.out / (BEST_NAME if validated else LAST_NAME)
        best = f", best {result}" if validated else ""
        self.log(f"done: {iteration} iterations; last {self.out / LAST_NAME}{best}")
        return result


def train(
    data: str | os.PathLike,
    *,
    config: ModelConfig | str | None = None,
    weights: str | os.PathLike | None = None,
    backbone_weights: str | os.PathLike | None = None,
    iters: int | None = None,
    epochs: float | None = None,
    batch_size: int | None = None,
    input_size: int | None = None,
    out_dir: str | os.PathLike = "runs/train",
    resume: bool = False,
    exist_ok: bool = False,
    lr: float | None = None,
    momentum: float | None = None,
    optimizer_name: str | None = None,
    max_expand: float | None = None,
    weight_decay: float | None = None,
    warmup_iters: int | None = None,
    warmup_init: float | None = None,
    lr_steps: tuple[float, ...] | None = None,
    gamma: float | None = None,
    clip_grad_norm: float | None = None,
    val_data: str | os.PathLike | None = None,
    val_fn: ValFn | None = None,
    val_metric: str | None = None,
    val_every: int | None = None,
    val_limit: int | None = None,
    save_every: int | None = None,
    log_every: int = 20,
    num_workers: int = 0,
    threads: int | None = None,
    device: str | torch.device | None = None,
    seed: int | None = None,
    progress: bool | None = None,
) -> Path:
    """Train YOLACT-Edge on a COCO-format dataset; return the best checkpoint (the last one without validation).

    data: a folder holding `images/` and `annotations.json`, or an annotation file (images in `images/`
        beside it, else beside it). Class names come from its categories (sorted by id); the model gets that
        many classes, whatever the preset says.
    config: preset name or ModelConfig (default yolact_edge_demo); input_size overrides its input size (anchor
        scales follow).
    weights: checkpoint (official layout or ours) to start from; tensors whose shape differs (the
        class-dependent conf_layer and semantic_seg_conv when the class count changes) stay freshly initialised.
    backbone_weights: ImageNet weights for the backbone alone (torchvision mobilenet_v2 / resnet50 / resnet101
        state_dict), loaded as the original's init_backbone does, when neither `weights` nor a resumed state
        gives the model its weights.
    iters / epochs: length of the run (iters wins; default 20 epochs). One iteration = batch_size (default 8)
        images per process.
    resume: continue from `out_dir/last_state.pt` with its saved settings (one given here that contradicts
        them is a ValueError; a longer iters/epochs extends the run); with no state file training starts
        afresh. Without resume, an out_dir holding an earlier run is refused unless exist_ok, which
        removes that run's files first.
    lr (1e-3), momentum (0.9), optimizer_name (sgd | adamw), weight_decay (5e-4), warmup_iters, warmup_init,
        lr_steps ((0.7, 0.9)), gamma (0.1): see `schedule.py`; clip_grad_norm: optional max gradient norm
        (the original has none); max_expand (4): largest zoom-out of the expand augmentation; seed (0).
    val_fn: called on rank 0 as `val_fn(model)` with the bare model in eval mode every `val_every` iterations
        and at the end; returns metrics, and `val_metric` (default: its first key) is maximised for best.pth.
    val_data: a dataset like `data`; without val_fn, its mean loss (over at most `val_limit` images) is
        computed instead and minimised for best.pth.
    save_every / val_every / log_every: intervals in iterations (defaults: 200, save_every, 20).
    num_workers: DataLoader worker processes; threads: torch intra-op threads (default: the CPU cores this
        process may use, divided among the local processes).
    progress: tqdm bar on rank 0 (default: when stderr is a terminal; otherwise one log line per log_every).
    """
    request = RunRequest(
        config=config, input_size=input_size, iters=iters, epochs=epochs, batch_size=batch_size, seed=seed,
        optimizer=optimizer_name, lr=lr, momentum=momentum, weight_decay=weight_decay, warmup_iters=warmup_iters,
        warmup_init=warmup_init, lr_steps=lr_steps, gamma=gamma, clip_grad_norm=clip_grad_norm,
        max_expand=max_expand,
    )
    options = TrainOptions(
        out_dir=Path(out_dir), resume=resume, exist_ok=exist_ok, weights=weights, backbone_weights=backbone_weights,
        val_data=val_data, val_fn=val_fn, val_metric=val_metric, val_every=val_every, val_limit=val_limit,
        save_every=save_every, log_every=log_every, num_workers=num_workers, threads=threads, device=device,
        progress=progress,
    )
    return Trainer(data, request, options).fit()
