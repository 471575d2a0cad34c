"""Training throughput: images/s of forward + loss + backward + SGD step, the time of each part, and the
images/s of the augmentation alone.

    python benchmarks/train_speed.py                       # yolact_edge_demo at 320 and 256, batch 8, 2 threads
    python benchmarks/train_speed.py --preset yolact_edge_demo --sizes 320 --batch 8 --threads 2 --iters 5
    python benchmarks/train_speed.py --device cuda --sizes 320 --batch 32 --iters 20   # on a GPU

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


def train_rate(preset: str, size: int, batch: int, iters: int, warmup: int, device: str) -> tuple[float, dict]:
    """(images/s, median ms of each part per iteration) over `iters` timed steps after `warmup` untimed ones."""
    from yolactedge.model.build import build_model
    from yolactedge.train import YolactLoss

    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    model = build_model(preset, input_size=size).to(dev).train()
    loss_fn = YolactLoss(model.config.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)
    batches = [make_batch(size, batch, seed=i) for i in range(2)]
    parts: dict[str, list[float]] = {"forward": [], "loss": [], "backward+step": [], "total": []}
    for i in range(warmup + iters):
        x, targets = batches[i % 2]
        sync()
        t0 = time.perf_counter()
        outputs = model.forward_train(x.to(dev))
        sync()
        t1 = time.perf_counter()
        losses = loss_fn(outputs, targets)
        sync()
        t2 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
        sync()
        t3 = time.perf_counter()
        if i >= warmup:
            for key, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                parts[key].append(seconds)
    median = {key: 1000 * float(np.median(values)) for key, values in parts.items()}
    return batch / (median["total"] / 1000), median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="yolact_edge_demo")
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 256])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations (the median is reported)")
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{args.threads} threads"
    print(f"{args.preset}, batch {args.batch}, {where}, torch {torch.__version__}, median of {args.iters}")
    print(f"{'input':>6} {'train img/s':>12} {'forward ms':>11} {'loss ms':>8} {'bwd+step ms':>12} {'augment img/s':>14}")
    for size in args.sizes:
        ips, ms = train_rate(args.preset, size, args.batch, args.iters, args.warmup, args.device)
        print(f"{size:>6} {ips:>12.2f} {ms['forward']:>11.1f} {ms['loss']:>8.1f} {ms['backward+step']:>12.1f} "
              f"{augment_rate(size):>14.1f}", flush=True)


if __name__ == "__main__":
    main()
