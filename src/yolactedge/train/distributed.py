"""One process or several under `torchrun` (DistributedDataParallel): who this process is, and meeting points.

Under `torchrun --nproc_per_node N` (RANK/WORLD_SIZE/LOCAL_RANK set) each process trains on its shard with
`batch_size` images per step (the global batch is N×batch_size), gradients averaged by DDP (gloo on CPU, nccl
on CUDA).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn


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


def close_distributed(dist_info: DistInfo) -> None:
    """Leave the process group this process created (one joined from outside stays)."""
    if dist_info.owns_group:
        import torch.distributed as dist

        dist.destroy_process_group()


def barrier(dist_info: DistInfo) -> None:
    if dist_info.world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def first_rank_with(dist_info: DistInfo, flag: bool, device: torch.device) -> int | None:
    """The lowest rank whose `flag` is set, agreed by every process (None: no rank's): a run that must stop on
    one process stops on all of them, instead of the others waiting forever in the next gradient all-reduce."""
    if dist_info.world_size == 1:
        return 0 if flag else None
    import torch.distributed as dist

    rank = torch.tensor([dist_info.rank if flag else dist_info.world_size], device=device)
    dist.all_reduce(rank, op=dist.ReduceOp.MIN)
    return int(rank) if int(rank) < dist_info.world_size else None


def default_threads(dist_info: DistInfo, device: torch.device) -> int:
    """The CPU cores this process may use, shared among the local processes (at most 4 beside a GPU)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    if device.type == "cuda":
        return max(1, min(4, cores // dist_info.local_world_size))
    return max(1, cores // dist_info.local_world_size)


class TrainForward(nn.Module):
    """Routes DDP's forward to `forward_train`, so gradient synchronisation hooks run."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        return self.model.forward_train(x)


def wrap_for_training(model: nn.Module, dist_info: DistInfo, device: torch.device) -> nn.Module:
    """The module a step calls: `forward_train`, under DDP when there are several processes."""
    net: nn.Module = TrainForward(model)
    if dist_info.world_size > 1:
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False,
            find_unused_parameters=True,  # the backbone's last MobileNetV2 stages are built but never run
        )
    return net
