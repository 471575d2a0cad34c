"""Training throughput: images/s of forward + loss + backward + SGD step, and of the augmentation alone.

    python benchmarks/train_speed.py                       # yolact_edge_demo at 320 and 256, batch 8, 2 threads
    python benchmarks/train_speed.py --preset yolact_edge_demo --sizes 320 --batch 8 --threads 2 --iters 5

Batches are synthetic shapes images (`render_sample`) passed through `TrainAugment`, so the targets look like
real training targets (matching and mask-loss cost depend on them). The model trains in BN train mode.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def make_batch(size: int, batch: int, seed: int = 0):
    from yolactedge.data import TrainAugment, masks_to_boxes, render_sample

    rng = np.random.default_rng(seed)
    augment = TrainAugment(size, seed=seed)
    images, targets = [], []
    for _ in range(batch):
        image, masks, classes = render_sample(rng, size)
        masks = masks.astype(np.uint8)
        image, masks, boxes, labels = augment(image, masks, masks_to_boxes(masks), classes)
        images.append(image.transpose(2, 0, 1))
        targets.append({"boxes": boxes, "labels": labels, "masks": masks, "crowd_boxes": np.zeros((0, 4), np.float32)})
    return torch.from_numpy(np.stack(images).astype(np.float32)), targets


def augment_rate(size: int, count: int = 16) -> float:
    """Images/s of TrainAugment alone (on pre-rendered images; JPEG decoding not included)."""
    from yolactedge.data import TrainAugment, masks_to_boxes, render_sample

    rng = np.random.default_rng(1)
    samples = [render_sample(rng, size) for _ in range(count)]
    augment = TrainAugment(size, seed=1)
    t0 = time.perf_counter()
    for image, masks, classes in samples:
        masks = masks.astype(np.uint8)
        augment(image, masks, masks_to_boxes(masks), classes)
    return count / (time.perf_counter() - t0)


def train_rate(preset: str, size: int, batch: int, iters: int, warmup: int) -> tuple[float, float]:
    """(images/s, seconds per iteration) over `iters` timed steps after `warmup` untimed ones."""
    from yolactedge.model.build import build_model
    from yolactedge.train import YolactLoss

    model = build_model(preset, input_size=size).train()
    loss_fn = YolactLoss(model.config.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)
    batches = [make_batch(size, batch, seed=i) for i in range(2)]
    times = []
    for i in range(warmup + iters):
        x, targets = batches[i % 2]
        t0 = time.perf_counter()
        losses = loss_fn(model.forward_train(x), targets)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    per_iter = float(np.median(times))
    return batch / per_iter, per_iter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="yolact_edge_demo")
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 256])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5, help="timed iterations (the median is reported)")
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"{args.preset}, batch {args.batch}, {args.threads} threads, torch {torch.__version__}, median of {args.iters}")
    print(f"{'input':>6} {'train img/s':>12} {'s/iter':>8} {'augment img/s':>14}")
    for size in args.sizes:
        ips, per_iter = train_rate(args.preset, size, args.batch, args.iters, args.warmup)
        print(f"{size:>6} {ips:>12.2f} {per_iter:>8.3f} {augment_rate(size):>14.1f}", flush=True)


if __name__ == "__main__":
    main()
