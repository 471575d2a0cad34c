"""The training loop: one process, or several under `torchrun` (DistributedDataParallel).

    from yolactedge.train import train
    best = train("data/shapes", config="yolact_edge_demo", iters=3000, batch_size=8, out_dir="runs/demo")

Schedule (the original's, sized to the run): SGD, momentum 0.9, weight decay 5e-4; the learning rate rises
linearly from `warmup_init` (default lr/10, the original's 1e-4 for 1e-3) to `lr` over `warmup_iters` (default
min(500, max_iter/10); the original warms up for 500 iterations), then is multiplied by `gamma` 0.1 at each of
`lr_steps` (fractions of max_iter, default 0.7 and 0.9, the original's coco_base_config proportions
280k/360k of 400k). BatchNorm stays in training mode (the original's freeze_bn False). A step whose gradients
are not finite is skipped, as the original skips non-finite losses.

Files in `out_dir` (only rank 0 writes; each write is atomic, so kill -9 at any moment leaves the old file or
the new one, never a torn one):

* `last.pth` + `last.json`: the model in the official layout with its config sidecar (`yolactedge.load_model`).
* `best.pth` + `best.json`: the best validation result so far (only with `val_fn` or `val_data`).
* `last_state.pt`: everything `resume=True` needs: model, optimizer, iteration, schedule, RNG states.
* `metrics.jsonl`: one JSON line per log interval and per validation.

Distributed: under `torchrun --nproc_per_node N` (RANK/WORLD_SIZE/LOCAL_RANK set) each process trains on its
DistributedSampler shard with `batch_size` images per step (the global batch is N×batch_size; the learning rate
is not rescaled, pass the one you want), gradients averaged by DDP (gloo on CPU, nccl on CUDA).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import ModelConfig, get_preset
from ..fileio import atomic_write
from ..model.build import build_model
from ..model.checkpoint import (
    config_to_dict,
    load_backbone_weights,
    load_state_dict_into,
    read_state_dict,
    save_checkpoint,
)
from .loss import YolactLoss

STATE_NAME = "last_state.pt"
LAST_NAME = "last.pth"
BEST_NAME = "best.pth"
METRICS_NAME = "metrics.jsonl"
DEFAULT_EPOCHS = 20

ValFn = Callable[[nn.Module], Mapping[str, float]]


# ----------------------------------------------------------------------------------------------- schedule


@dataclass(frozen=True)
class Schedule:
    """Learning rate as a function of the iteration: linear warm-up, then steps of `gamma`."""

    max_iter: int
    lr: float
    warmup_iters: int
    warmup_init: float
    lr_steps: tuple[int, ...]
    gamma: float = 0.1

    @classmethod
    def create(
        cls, max_iter: int, lr: float, *, warmup_iters: int | None = None, warmup_init: float | None = None,
        lr_steps: tuple[float, ...] = (0.7, 0.9), gamma: float = 0.1,
    ) -> Schedule:
        if max_iter < 1:
            raise ValueError(f"the run needs at least one iteration, got {max_iter}")
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        warmup = min(500, max_iter // 10) if warmup_iters is None else int(warmup_iters)
        steps = tuple(sorted(int(round(f * max_iter)) if isinstance(f, float) and f <= 1 else int(f) for f in lr_steps))
        return cls(max_iter, float(lr), max(0, warmup), lr / 10 if warmup_init is None else float(warmup_init), steps, gamma)

    def lr_at(self, iteration: int) -> float:
        if iteration < self.warmup_iters and self.warmup_init < self.lr:
            return self.warmup_init + (self.lr - self.warmup_init) * iteration / self.warmup_iters
        return self.lr * self.gamma ** sum(iteration >= s for s in self.lr_steps)


# ------------------------------------------------------------------------------------------------- data


def resolve_data(data: str | os.PathLike) -> tuple[Path, Path]:
    """A dataset folder (images/ + annotations.json) or an annotation file → (image folder, annotation file).

    For an annotation file the images are looked up in `images/` beside it, else beside it directly.
    """
    path = Path(data)
    if path.is_dir():
        ann = path / "annotations.json"
        if not ann.is_file():
            raise FileNotFoundError(f"{path}: a dataset folder needs annotations.json (and images/)")
    elif path.is_file():
        ann = path
    else:
        raise FileNotFoundError(f"{path}: no such dataset folder or annotation file")
    images = ann.parent / "images"
    return (images if images.is_dir() else ann.parent), ann


class InfiniteBatchSampler(torch.utils.data.Sampler):
    """Endless batches of this rank's DistributedSampler shard, epoch after epoch (`set_epoch(e)` each time),
    starting at iteration `start_iter`.

    Each item is `(dataset index, augmentation seed)`, the seed derived from (seed, rank, position in the
    stream): what a step trains on is a pure function of (seed, rank, world size, iteration), so a resumed run
    sees exactly the batches, augmentation included, that the interrupted one would have.
    """

    def __init__(self, num_samples: int, batch_size: int, *, rank: int = 0, world_size: int = 1, seed: int = 0,
                 start_iter: int = 0) -> None:
        if num_samples < 1:
            raise ValueError("the training set is empty")
        self.sized = range(num_samples)
        self.batch_size, self.rank, self.world_size, self.seed = batch_size, rank, world_size, seed
        self.start_iter = start_iter

    def per_rank(self) -> int:
        return math.ceil(len(self.sized) / self.world_size)

    def sample_seed(self, position: int) -> int:
        return ((self.seed % 2**20) << 44) | ((self.rank % 2**12) << 32) | (position % 2**32)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        from torch.utils.data.distributed import DistributedSampler

        position = self.start_iter * self.batch_size
        epoch, offset = divmod(position, self.per_rank())
        batch: list[tuple[int, int]] = []
        while True:
            sampler = DistributedSampler(self.sized, num_replicas=self.world_size, rank=self.rank, shuffle=True,
                                         seed=self.seed, drop_last=False)
            sampler.set_epoch(epoch)
            for index in list(sampler)[offset:]:
                batch.append((index, self.sample_seed(position)))
                position += 1
                if len(batch) == self.batch_size:
                    yield batch
                    batch = []
            epoch, offset = epoch + 1, 0


class SeededSamples(torch.utils.data.Dataset):
    """`dataset[(index, seed)]`: reseed the dataset's augmentation with `seed`, then load item `index`."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        self.dataset.transform.reseed(seed)
        return self.dataset[index]


def _worker_init(worker_id: int) -> None:
    torch.set_num_threads(1)
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass


def _to_targets(targets: list[dict]) -> list[dict]:
    return [{k: v for k, v in t.items() if k != "image_id"} for t in targets]


# ----------------------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), else a single-process DistInfo."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        owns = True
    return DistInfo(rank, world, local_rank, local_world, owns)


class _TrainForward(nn.Module):
    """Routes DDP's forward to `forward_train`, so gradient synchronisation hooks run."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        return self.model.forward_train(x)


# ------------------------------------------------------------------------------------------- state I/O


def make_optimizer(name: str, params, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """SGD as the original trains; AdamW (betas from momentum) converges faster from scratch, which is what a
    model without ImageNet weights on a CPU budget needs."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; use sgd or adamw")


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_train_state(path: str | os.PathLike) -> dict:
    """Read a `last_state.pt` (tensors and plain containers only: loaded with weights_only=True)."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


# -------------------------------------------------------------------------------------------- helpers


def _resolve_config(config: ModelConfig | str, class_names: list[str], input_size: int | None) -> ModelConfig:
    cfg = get_preset(config) if isinstance(config, str) else config
    names = tuple(class_names)
    if cfg.class_names != names:
        cfg = cfg.replace(num_classes=len(names) + 1, class_names=names)
    if input_size is not None and input_size != cfg.input_size:
        scale = input_size / cfg.input_size
        cfg = cfg.replace(input_size=int(input_size), pred_scales=tuple(round(s * scale) for s in cfg.pred_scales))
    return cfg


def _default_threads(dist_info: DistInfo, device: torch.device) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    if device.type == "cuda":
        return max(1, min(4, cores // dist_info.local_world_size))
    return max(1, cores // dist_info.local_world_size)


class _Averages:
    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, values: Mapping[str, float]) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1

    def mean(self) -> dict[str, float]:
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}

    def reset(self) -> None:
        self.sums, self.count = {}, 0


@torch.no_grad()
def validation_loss(model: nn.Module, loader, loss_fn: YolactLoss, device: torch.device,
                    limit: int | None = None) -> dict[str, float]:
    """Mean losses over a validation loader with the model in eval mode (BN running statistics)."""
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    batches = images = 0
    try:
        for batch, targets in loader:
            x = torch.from_numpy(batch).to(device)
            losses = loss_fn(model.forward_train(x), _to_targets(targets))
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            batches += 1
            images += x.shape[0]
            if limit is not None and images >= limit:
                break
    finally:
        model.train(was_training)
    out = {f"val_{k}": v / max(batches, 1) for k, v in sums.items()}
    out["val_loss"] = sum(out.values())
    return out


# ------------------------------------------------------------------------------------------------ train


def train(
    data: str | os.PathLike,
    *,
    config: ModelConfig | str = "yolact_edge_demo",
    weights: str | os.PathLike | None = None,
    backbone_weights: str | os.PathLike | None = None,
    iters: int | None = None,
    epochs: float | None = None,
    batch_size: int = 8,
    input_size: int | None = None,
    out_dir: str | os.PathLike = "runs/train",
    resume: bool = False,
    lr: float = 1e-3,
    momentum: float = 0.9,
    optimizer_name: str = "sgd",
    max_expand: float = 4.0,
    weight_decay: float = 5e-4,
    warmup_iters: int | None = None,
    warmup_init: float | None = None,
    lr_steps: tuple[float, ...] = (0.7, 0.9),
    gamma: float = 0.1,
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
    seed: int = 0,
    progress: bool | None = None,
) -> Path:
    """Train YOLACT-Edge on a COCO-format dataset; return the best checkpoint (the last one without validation).

    data: a folder holding `images/` and `annotations.json`, or an annotation file (images in `images/`
        beside it, else beside it). Class names come from its categories (sorted by id); the model gets that
        many classes, whatever the preset says.
    config: preset name or ModelConfig; input_size overrides its input size (anchor scales follow).
    weights: checkpoint (official layout or ours) to start from; tensors whose shape differs (the
        class-dependent conf_layer and semantic_seg_conv when the class count changes) stay freshly initialised.
    backbone_weights: ImageNet weights for the backbone alone (torchvision mobilenet_v2 / resnet50 / resnet101
        state_dict), loaded as the original's init_backbone does, when neither `weights` nor a resumed state
        gives the model its weights.
    iters / epochs: length of the run (iters wins; default 20 epochs). One iteration = batch_size images per
        process.
    resume: continue from `out_dir/last_state.pt` with its saved schedule, iteration and optimizer (the
        schedule arguments of this call are then ignored); with no state file training starts afresh.
    lr, momentum, weight_decay, warmup_iters, warmup_init, lr_steps, gamma: see the module docstring;
        lr_steps entries <= 1.0 are fractions of max_iter, larger ones absolute iterations.
    clip_grad_norm: optional max gradient norm (the original has none).
    val_fn: called on rank 0 as `val_fn(model)` with the bare model in eval mode every `val_every` iterations
        and at the end; returns metrics, and `val_metric` (default: its first key) is maximised for best.pth.
    val_data: a dataset like `data`; without val_fn, its mean loss (over at most `val_limit` images) is
        computed instead and minimised for best.pth.
    save_every / val_every / log_every: intervals in iterations (defaults: 200, save_every, 20).
    num_workers: DataLoader worker processes; threads: torch intra-op threads (default: the CPU cores this
        process may use, divided among the local processes).
    progress: tqdm bar on rank 0 (default: when stderr is a terminal; otherwise one log line per log_every).
    """
    from tqdm import tqdm

    from ..data import CocoDataset, EvalTransform, TrainAugment, collate

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if weights is not None and backbone_weights is not None:
        raise ValueError("give --weights (a whole model) or --backbone-weights (ImageNet backbone), not both")
    if device is None:
        device_type = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        device_type = torch.device(device).type
    dist_info = init_distributed(device_type)
    try:
        dev = torch.device(device) if device is not None else torch.device(device_type)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", dist_info.local_rank)
            torch.cuda.set_device(dev)
        torch.set_num_threads(threads or _default_threads(dist_info, dev))

        out = Path(out_dir)
        main = dist_info.is_main
        if main:
            out.mkdir(parents=True, exist_ok=True)

        def log(message: str) -> None:
            if main:
                (tqdm.write if bar is not None else print)(message, file=sys.stdout)
                sys.stdout.flush()

        bar = None
        image_dir, ann_file = resolve_data(data)
        dataset = CocoDataset(image_dir, ann_file, transform=None)
        cfg = _resolve_config(config, dataset.class_names, input_size)
        size = cfg.input_size

        state_path = out / STATE_NAME
        state = load_train_state(state_path) if resume and state_path.is_file() else None
        if state is not None:
            schedule = Schedule(**{**state["schedule"], "lr_steps": tuple(state["schedule"]["lr_steps"])})
            start_iter = int(state["iteration"])
            seed = int(state.get("seed", seed))
            batch_size = int(state.get("batch_size", batch_size))
        else:
            world_batch = batch_size * dist_info.world_size
            if iters is None:
                iters = math.ceil((DEFAULT_EPOCHS if epochs is None else epochs) * len(dataset) / world_batch)
            schedule = Schedule.create(int(iters), lr, warmup_iters=warmup_iters, warmup_init=warmup_init,
                                       lr_steps=lr_steps, gamma=gamma)
            start_iter = 0

        _seed_everything(seed + dist_info.rank)
        model = build_model(cfg)
        if state is None and weights is not None:
            ignored = load_state_dict_into(model, read_state_dict(weights), reinit_mismatched=True)
            reinit = [k for k in ignored if k in model.state_dict()]
            log(f"fine-tuning from {weights}" + (f"; re-initialised {len(reinit)} tensors ({', '.join(reinit[:4])})" if reinit else ""))
        elif state is None and backbone_weights is not None:
            loaded = load_backbone_weights(model, backbone_weights)
            log(f"backbone initialised from {backbone_weights} ({loaded} tensors)")
        model.to(dev).train()
        params = [p for p in model.parameters() if p.requires_grad]
        if state is not None:
            optimizer_name = state.get("optimizer_name", "sgd")  # a resumed run keeps its optimizer
        optimizer = make_optimizer(optimizer_name, params, schedule.lr_at(start_iter), momentum, weight_decay)
        best = {"value": None}
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            best = {"value": state.get("best")}
            if main and "rng" in state:
                _set_rng_state(state["rng"])
            else:
                _seed_everything(seed + dist_info.rank + 7919 * start_iter)
            log(f"resuming {out} at iteration {start_iter}/{schedule.max_iter}")
        elif resume:
            log(f"resume: no {state_path}, starting from scratch")

        net: nn.Module = _TrainForward(model)
        if dist_info.world_size > 1:
            net = nn.parallel.DistributedDataParallel(
                net, device_ids=[dev.index] if dev.type == "cuda" else None, broadcast_buffers=False,
                find_unused_parameters=True,  # the backbone's last MobileNetV2 stages are built but never run
            )

        # Data: every sample's augmentation is seeded from its position in the stream (see InfiniteBatchSampler).
        dataset.transform = TrainAugment(size, seed=seed, max_expand=max_expand)
        loader = torch.utils.data.DataLoader(
            SeededSamples(dataset),
            batch_sampler=InfiniteBatchSampler(len(dataset), batch_size, rank=dist_info.rank,
                                               world_size=dist_info.world_size, seed=seed, start_iter=start_iter),
            num_workers=num_workers, collate_fn=collate, worker_init_fn=_worker_init if num_workers else None,
            persistent_workers=num_workers > 0, pin_memory=dev.type == "cuda",
        )
        loss_fn = YolactLoss(cfg.num_classes)

        val_loader = None
        if val_data is not None and val_fn is None and main:
            vdir, vann = resolve_data(val_data)
            vset = CocoDataset(vdir, vann, transform=EvalTransform(size))
            if vset.class_names != dataset.class_names:
                raise ValueError(f"{vann}: its classes {vset.class_names} differ from the training set's")
            val_loader = torch.utils.data.DataLoader(vset, batch_size=batch_size, shuffle=False,
                                                     num_workers=num_workers, collate_fn=collate)
        validating = val_fn is not None or val_data is not None  # the same on every rank (they meet at barriers)
        save_every = save_every or 200
        val_every = val_every or save_every
        log_every = max(1, log_every)

        def validate(iteration: int) -> dict[str, float] | None:
            if not main or not validating:
                return None
            t0 = time.perf_counter()
            if val_fn is not None:
                model.eval()
                try:
                    metrics = {k: float(v) for k, v in dict(val_fn(model)).items()}
                finally:
                    model.train()
                key = val_metric or next(iter(metrics), None)
                value, better = (metrics.get(key) if key else None), (lambda a, b: a > b)
            else:
                metrics = validation_loss(model, val_loader, loss_fn, dev, val_limit)
                key, value, better = "val_loss", metrics["val_loss"], (lambda a, b: a < b)
            record = {"iteration": iteration, "seconds": round(time.perf_counter() - t0, 2), **metrics}
            _append_metrics(out / METRICS_NAME, {"kind": "val", **record})
            log("val  " + _fmt(record))
            if value is not None and math.isfinite(value) and (best["value"] is None or better(value, best["value"])):
                best["value"] = value
                save_checkpoint(model, out / BEST_NAME, extra=_meta(iteration, schedule, metrics, cfg))
                log(f"best {key}={value:.4f} at iteration {iteration} → {out / BEST_NAME}")
            return metrics

        def save(iteration: int, last_losses: dict[str, float]) -> None:
            if not main:
                return
            save_checkpoint(model, out / LAST_NAME, extra=_meta(iteration, schedule, last_losses, cfg))
            payload = {
                "iteration": iteration,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "optimizer_name": optimizer_name,
                "schedule": {**dataclasses.asdict(schedule), "lr_steps": list(schedule.lr_steps)},
                "batch_size": batch_size,
                "world_size": dist_info.world_size,
                "seed": seed,
                "best": best["value"],
                "rng": _rng_state(),
                "config": json.dumps(config_to_dict(cfg)),
                "data": str(ann_file),
            }
            atomic_write(state_path, lambda f: torch.save(payload, f))

        if main:
            log(f"training {cfg.name} ({cfg.num_classes - 1} classes, input {size}) on {len(dataset)} images "
                f"from {ann_file}; {schedule.max_iter} iterations × {batch_size} images × {dist_info.world_size} "
                f"process(es) on {dev}, {torch.get_num_threads()} threads, lr {schedule.lr} "
                f"(warm-up {schedule.warmup_iters} from {schedule.warmup_init:g}, ×{schedule.gamma} at {list(schedule.lr_steps)})")
        show_bar = main and (sys.stderr.isatty() if progress is None else progress)
        bar = tqdm(total=schedule.max_iter, initial=start_iter, desc="train", unit="it", dynamic_ncols=True,
                   disable=not show_bar, file=sys.stderr) if show_bar else None

        averages = _Averages()
        last_losses: dict[str, float] = {}
        skipped = 0
        t_log, data_time = time.perf_counter(), 0.0
        batches = iter(loader)
        iteration = start_iter
        try:
            while iteration < schedule.max_iter:
                current_lr = schedule.lr_at(iteration)
                for group in optimizer.param_groups:
                    group["lr"] = current_lr
                t_data = time.perf_counter()
                images, targets = next(batches)
                data_time += time.perf_counter() - t_data
                x = torch.from_numpy(images).to(dev, non_blocking=True)
                losses = loss_fn(net(x), _to_targets(targets))
                total = sum(losses.values())
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                norm = torch.nn.utils.clip_grad_norm_(params, clip_grad_norm if clip_grad_norm else float("inf"))
                if torch.isfinite(norm):
                    optimizer.step()
                else:
                    skipped += 1
                iteration += 1
                values = {k: float(v.detach()) for k, v in losses.items()}
                values["T"] = sum(values.values())
                last_losses = dict(values)
                values["grad_norm"] = float(norm) if torch.isfinite(norm) else 0.0
                averages.add(values)
                if bar is not None:
                    bar.update(1)
                if iteration % log_every == 0 or iteration == schedule.max_iter:
                    mean = averages.mean()
                    elapsed = time.perf_counter() - t_log
                    ips = averages.count * batch_size * dist_info.world_size / max(elapsed, 1e-9)
                    record = {"iteration": iteration, "lr": current_lr, **{k: round(v, 5) for k, v in mean.items()},
                              "img_per_s": round(ips, 2), "data_s": round(data_time / max(averages.count, 1), 4),
                              "skipped": skipped}
                    if main:
                        _append_metrics(out / METRICS_NAME, {"kind": "train", "time": time.time(), **record})
                        if bar is not None:
                            bar.set_postfix({k: f"{v:.3f}" for k, v in mean.items()}, refresh=False)
                        else:
                            log(f"iter {iteration}/{schedule.max_iter} " + _fmt(record))
                    averages.reset()
                    t_log, data_time = time.perf_counter(), 0.0
                if iteration % save_every == 0 and iteration < schedule.max_iter:
                    save(iteration, last_losses)
                if validating and iteration % val_every == 0 and iteration < schedule.max_iter:
                    validate(iteration)
                    _barrier(dist_info)
        finally:
            if bar is not None:
                bar.close()
                bar = None
        if iteration > start_iter or not (out / LAST_NAME).is_file():
            save(iteration, last_losses)
        if validating:
            validate(iteration)
        _barrier(dist_info)
        result = out / (BEST_NAME if (out / BEST_NAME).is_file() and validating else LAST_NAME)
        if main:
            log(f"done: {iteration} iterations; last {out / LAST_NAME}" + (f", best {result}" if result.name == BEST_NAME else ""))
        return result
    finally:
        if dist_info.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _barrier(dist_info: DistInfo) -> None:
    if dist_info.world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def _meta(iteration: int, schedule: Schedule, metrics: Mapping[str, float], cfg: ModelConfig) -> dict:
    return {"training": {"iteration": iteration, "max_iter": schedule.max_iter, "preset": cfg.name,
                         "metrics": {k: float(v) for k, v in metrics.items()}}}


def _fmt(record: Mapping[str, Any]) -> str:
    parts = []
    for k, v in record.items():
        if k == "iteration":
            continue
        parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


def _append_metrics(path: Path, record: Mapping[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
