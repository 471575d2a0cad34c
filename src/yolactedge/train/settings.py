"""The settings that define a run: what a new run starts with, and what a resumed one must keep.

A run is defined by its model config (classes and input size included), batch, seed, optimizer and its
parameters, learning-rate schedule, gradient clipping and augmentation strength. All of them are saved in the
resume state; resuming restores them.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import ModelConfig, config_from_dict, config_to_dict, get_preset
from .schedule import Schedule

DEFAULT_EPOCHS = 20
# How the CLI spells a setting, so that an error names the flag the user typed.
FLAGS = {
    "config": "--config", "input_size": "--imgsz", "iters": "--iters", "epochs": "--epochs", "batch_size": "--batch",
    "seed": "--seed", "optimizer": "--optimizer", "lr": "--lr", "clip_grad_norm": "--clip-grad",
    "max_expand": "--max-expand",
}
DEFAULTS: dict[str, Any] = {
    "config": "yolact_edge_demo", "batch_size": 8, "seed": 0, "optimizer": "sgd", "lr": 1e-3, "momentum": 0.9,
    "weight_decay": 5e-4, "lr_steps": (0.7, 0.9), "gamma": 0.1, "max_expand": 4.0,
}


def resolve_config(config: ModelConfig | str, class_names: Sequence[str], input_size: int | None) -> ModelConfig:
    """The preset (or config) with the dataset's classes, at `input_size` when given."""
    cfg = get_preset(config) if isinstance(config, str) else config
    names = tuple(class_names)
    if cfg.class_names != names:
        cfg = cfg.replace(num_classes=len(names) + 1, class_names=names)
    return cfg if input_size is None else cfg.at_input_size(input_size)


@dataclass(frozen=True)
class RunSettings:
    """The resolved settings of one run, as saved in its resume state."""

    config: ModelConfig
    schedule: Schedule
    batch_size: int
    seed: int
    optimizer: str
    momentum: float
    weight_decay: float
    clip_grad_norm: float | None
    max_expand: float

    def to_state(self) -> dict[str, Any]:
        return {
            "config": json.dumps(config_to_dict(self.config)),
            "schedule": {**dataclasses.asdict(self.schedule), "lr_steps": list(self.schedule.lr_steps)},
            "optimizer_name": self.optimizer, "batch_size": self.batch_size, "seed": self.seed,
            "momentum": self.momentum, "weight_decay": self.weight_decay, "clip_grad_norm": self.clip_grad_norm,
            "max_expand": self.max_expand,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> RunSettings:
        """Settings from a resume state; a state written before all settings were saved gets the values those
        versions resumed with (the defaults)."""
        schedule = Schedule(**{**state["schedule"], "lr_steps": tuple(state["schedule"]["lr_steps"])})
        return cls(
            config=config_from_dict(json.loads(state["config"])), schedule=schedule,
            batch_size=int(state["batch_size"]), seed=int(state["seed"]),
            optimizer=state.get("optimizer_name", DEFAULTS["optimizer"]),
            momentum=float(state.get("momentum", DEFAULTS["momentum"])),
            weight_decay=float(state.get("weight_decay", DEFAULTS["weight_decay"])),
            clip_grad_norm=state.get("clip_grad_norm"),
            max_expand=float(state.get("max_expand", DEFAULTS["max_expand"])),
        )


@dataclass(frozen=True)
class RunRequest:
    """The settings as the caller gave them; None means not given: the default for a new run, the saved value
    for a resumed one."""

    config: ModelConfig | str | None = None
    input_size: int | None = None
    iters: int | None = None
    epochs: float | None = None
    batch_size: int | None = None
    seed: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    warmup_iters: int | None = None
    warmup_init: float | None = None
    lr_steps: tuple[float, ...] | None = None
    gamma: float | None = None
    clip_grad_norm: float | None = None
    max_expand: float | None = None

    def value(self, name: str) -> Any:
        given = getattr(self, name)
        return DEFAULTS.get(name) if given is None else given

    def iterations(self, num_images: int, batch_size: int, world_size: int) -> int | None:
        """The run length in iterations when iters or epochs is given (iters wins)."""
        if self.iters is not None:
            return int(self.iters)
        if self.epochs is not None:
            return math.ceil(self.epochs * num_images / (batch_size * world_size))
        return None

    def new_run(self, class_names: Sequence[str], num_images: int, world_size: int) -> RunSettings:
        batch = int(self.value("batch_size"))
        if batch < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch}")
        iters = self.iterations(num_images, batch, world_size)
        if iters is None:
            iters = math.ceil(DEFAULT_EPOCHS * num_images / (batch * world_size))
        schedule = Schedule.create(iters, self.value("lr"), warmup_iters=self.warmup_iters,
                                   warmup_init=self.warmup_init, lr_steps=self.value("lr_steps"),
                                   gamma=self.value("gamma"))
        return RunSettings(
            config=resolve_config(self.value("config"), class_names, self.input_size), schedule=schedule,
            batch_size=batch, seed=int(self.value("seed")), optimizer=self.value("optimizer"),
            momentum=float(self.value("momentum")), weight_decay=float(self.value("weight_decay")),
            clip_grad_norm=self.clip_grad_norm, max_expand=float(self.value("max_expand")),
        )

    def resumed_run(self, saved: RunSettings, class_names: Sequence[str], num_images: int,
                    world_size: int) -> tuple[RunSettings, str | None]:
        """The saved settings, checked against those given: a contradiction is an error naming its flag; a
        longer run length extends the run (the returned note says so; the lr steps stay where they were)."""
        if saved.config.class_names != tuple(class_names):
            raise ValueError(f"--data: its classes {list(class_names)} differ from the resumed run's "
                             f"{list(saved.config.class_names)}")
        for name, kept in self._saved_values(saved, class_names).items():
            given = getattr(self, name)
            if given is not None and given != kept:
                raise ValueError(_contradiction(name, given, kept))
        requested = self.iterations(num_images, saved.batch_size, world_size)
        if requested is None or requested == saved.schedule.max_iter:
            return saved, None
        flag = FLAGS["iters" if self.iters is not None else "epochs"]
        if requested < saved.schedule.max_iter:
            raise ValueError(f"{flag}: {requested} iterations is shorter than the resumed run's "
                             f"{saved.schedule.max_iter}; give a longer run or leave it out")
        note = (f"extending the run from {saved.schedule.max_iter} to {requested} iterations "
                f"(lr steps stay at {list(saved.schedule.lr_steps)})")
        return dataclasses.replace(saved, schedule=dataclasses.replace(saved.schedule, max_iter=requested)), note

    def _saved_values(self, saved: RunSettings, class_names: Sequence[str]) -> dict[str, Any]:
        """The saved value of every given setting, in the form it was given in."""
        schedule = saved.schedule
        values: dict[str, Any] = {
            "input_size": saved.config.input_size, "batch_size": saved.batch_size, "seed": saved.seed,
            "optimizer": saved.optimizer, "momentum": saved.momentum, "weight_decay": saved.weight_decay,
            "clip_grad_norm": saved.clip_grad_norm, "max_expand": saved.max_expand, "lr": schedule.lr,
            "warmup_iters": schedule.warmup_iters, "warmup_init": schedule.warmup_init, "gamma": schedule.gamma,
        }
        if self.config is not None:
            given = resolve_config(self.config, class_names, self.input_size or saved.config.input_size)
            values["config"] = self.config if given == saved.config else saved.config
        if self.lr_steps is not None:
            resolved = Schedule.create(schedule.max_iter, schedule.lr, lr_steps=self.lr_steps).lr_steps
            values["lr_steps"] = self.lr_steps if resolved == schedule.lr_steps else schedule.lr_steps
        return values


def _contradiction(name: str, given: Any, kept: Any) -> str:
    def show(value: Any) -> str:
        return value.name if isinstance(value, ModelConfig) else "none" if value is None else str(value)

    label = FLAGS.get(name, name)
    return (f"{label} {show(given)} contradicts the run being resumed, which has {label} {show(kept)}; "
            f"leave it out to resume, or train into another --out")
