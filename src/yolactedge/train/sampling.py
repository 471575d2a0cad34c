"""Where training images come from: the dataset on disk, and a batch stream that a resumed run can replay.

What a step trains on is a pure function of (seed, rank, world size, iteration), augmentation included, so a
resumed run sees exactly the batches the interrupted one would have.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import torch


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
    stream).
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


def worker_init(worker_id: int) -> None:
    """One thread per loader worker: the workers run beside the training threads, not instead of them."""
    torch.set_num_threads(1)
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass


def training_loader(dataset, batch_size: int, *, rank: int, world_size: int, seed: int, start_iter: int,
                    num_workers: int, pin_memory: bool) -> torch.utils.data.DataLoader:
    """The endless, replayable batch stream of this rank from iteration `start_iter` on."""
    from ..data import collate

    return torch.utils.data.DataLoader(
        SeededSamples(dataset),
        batch_sampler=InfiniteBatchSampler(len(dataset), batch_size, rank=rank, world_size=world_size, seed=seed,
                                           start_iter=start_iter),
        num_workers=num_workers, collate_fn=collate, worker_init_fn=worker_init if num_workers else None,
        persistent_workers=num_workers > 0, pin_memory=pin_memory,
    )


def to_targets(targets: list[dict]) -> list[dict]:
    """The loader's per-image targets as the loss takes them (without the bookkeeping image id)."""
    return [{k: v for k, v in t.items() if k != "image_id"} for t in targets]
