"""The training loop on a tiny synthetic set: loss falls, checkpoints load, resume is exact, DDP runs."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from yolactedge import load_model
from yolactedge.model.build import build_model
from yolactedge.model.checkpoint import read_state_dict, save_checkpoint
from yolactedge.train import Schedule, load_train_state, resolve_data, train
from yolactedge.train.sampling import InfiniteBatchSampler

SIZE = 96
COMMON = dict(input_size=SIZE, threads=1, progress=False, log_every=5)  # 1 thread: the cores are shared


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from yolactedge.data import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("data") / "tiny", 4, seed=3, image_size=SIZE, progress=False)


def read_metrics(out, kind="train"):
    lines = (Path(out) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_loss_falls_and_checkpoint_loads(tiny, tmp_path):
    out = tmp_path / "run"
    # From scratch the first gradients are huge (norms in the thousands): warm-up and clipping keep it stable.
    path = train(tiny, iters=20, batch_size=4, out_dir=out, lr=1e-3, warmup_iters=5, clip_grad_norm=100.0,
                 lr_steps=(), **COMMON)
    assert path == out / "last.pth"
    records = read_metrics(out)
    assert [r["iteration"] for r in records] == [5, 10, 15, 20]
    first, last = records[0]["T"], records[-1]["T"]
    assert last < 0.8 * first, (first, last)
    assert all(r["skipped"] == 0 and r["grad_norm"] > 0 for r in records)

    model = load_model(path)
    assert model.config.input_size == SIZE and model.config.num_classes == 7
    saved = read_state_dict(path)
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    meta = json.loads((out / "last.json").read_text())
    assert meta["training"]["iteration"] == 20
    with torch.no_grad():
        boxes, scores, coef, proto = model(torch.zeros(1, 3, SIZE, SIZE))
    assert torch.isfinite(boxes).all() and scores.shape[1] == 6
    state = load_train_state(out / "last_state.pt")
    assert state["iteration"] == 20 and state["schedule"]["max_iter"] == 20
    assert not list(out.glob(".*.tmp"))


def test_resume_continues_exactly(tiny, tmp_path):
    kw = dict(iters=6, batch_size=2, lr=2e-3, warmup_iters=2, save_every=3, val_every=3, **COMMON)
    ref = tmp_path / "ref"
    train(tiny, out_dir=ref, val_fn=lambda m: {"score": 1.0}, **kw)

    calls = []

    def crash(model):
        calls.append(1)
        raise KeyboardInterrupt("simulated kill")

    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        train(tiny, out_dir=out, val_fn=crash, **kw)
    assert load_train_state(out / "last_state.pt")["iteration"] == 3
    train(tiny, out_dir=out, resume=True, val_fn=lambda m: {"score": 1.0}, **kw)
    assert load_train_state(out / "last_state.pt")["iteration"] == 6
    a, b = read_state_dict(ref / "last.pth"), read_state_dict(out / "last.pth")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    iters = [r["iteration"] for r in read_metrics(out)]
    assert iters == [5, 6]  # the interrupted run logged nothing, the resumed one from iteration 4 on

    # Resuming a finished run trains no further and returns the best checkpoint.
    assert train(tiny, out_dir=out, resume=True, val_fn=lambda m: {"score": 1.0}, **kw) == out / "best.pth"
    assert load_train_state(out / "last_state.pt")["iteration"] == 6


def test_fine_tune_from_other_class_count_and_val_loss(tiny, tmp_path):
    source = build_model("yolact_edge_demo", num_classes=3, input_size=SIZE)
    ckpt = save_checkpoint(source, tmp_path / "three.pth")
    out = tmp_path / "ft"
    path = train(tiny, weights=ckpt, iters=2, batch_size=2, out_dir=out, lr=1e-9, warmup_iters=0,
                 val_data=tiny, val_every=1, **COMMON)
    assert path == out / "best.pth"
    tuned = read_state_dict(out / "last.pth")
    key = "fpn_phase_1.lat_layers.0.weight"
    torch.testing.assert_close(tuned[key], source.state_dict()[key], rtol=0, atol=1e-6)
    assert tuned["prediction_layers.0.conf_layer.weight"].shape[0] == 3 * 7
    vals = read_metrics(out, "val")
    assert [v["iteration"] for v in vals] == [1, 2]
    assert all(v["val_loss"] > 0 and set(v) >= {"val_B", "val_C", "val_M", "val_S"} for v in vals)
    assert load_model(path).config.num_classes == 7


def test_schedule():
    s = Schedule.create(1000, 1e-3, warmup_iters=100)
    assert s.lr_steps == (700, 900) and s.warmup_init == pytest.approx(1e-4)
    assert s.lr_at(0) == pytest.approx(1e-4)
    assert s.lr_at(50) == pytest.approx(5.5e-4)
    assert s.lr_at(100) == pytest.approx(1e-3) and s.lr_at(699) == pytest.approx(1e-3)
    assert s.lr_at(700) == pytest.approx(1e-4) and s.lr_at(950) == pytest.approx(1e-5)
    assert Schedule.create(20, 1e-3).warmup_iters == 2
    assert Schedule.create(10_000, 1e-3).warmup_iters == 500
    with pytest.raises(ValueError):
        Schedule.create(0, 1e-3)


def test_sampler_resumes_and_shards():
    def take(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    full = take(InfiniteBatchSampler(10, 3, seed=5), 8)
    assert take(InfiniteBatchSampler(10, 3, seed=5, start_iter=5), 3) == full[5:]
    first_epoch = [i for batch in full for i, _ in batch][:10]
    assert sorted(first_epoch) == list(range(10))
    seeds = [s for batch in full for _, s in batch]
    assert len(set(seeds)) == len(seeds)
    r0 = [i for b in take(InfiniteBatchSampler(10, 5, rank=0, world_size=2), 1) for i, _ in b]
    r1 = [i for b in take(InfiniteBatchSampler(10, 5, rank=1, world_size=2), 1) for i, _ in b]
    assert sorted(r0 + r1) == list(range(10))


def test_resolve_data(tiny, tmp_path):
    assert resolve_data(tiny) == (tiny / "images", tiny / "annotations.json")
    assert resolve_data(tiny / "annotations.json") == (tiny / "images", tiny / "annotations.json")
    flat = tmp_path / "flat.json"
    flat.write_text("{}")
    assert resolve_data(flat) == (tmp_path, flat)
    with pytest.raises(FileNotFoundError):
        resolve_data(tmp_path / "missing")
    with pytest.raises(FileNotFoundError):
        resolve_data(tmp_path)


def test_ddp_two_processes(tiny, tmp_path):
    out = tmp_path / "ddp"
    script = tmp_path / "run_ddp.py"
    script.write_text(textwrap.dedent(f"""
        import os, torch
        from yolactedge.train import train
        path = train({str(tiny)!r}, iters=3, batch_size=2, input_size={SIZE}, out_dir={str(out)!r},
                     threads=1, progress=False, log_every=1, save_every=2, val_data={str(tiny)!r}, val_every=2)
        assert torch.distributed.is_initialized() is False
        # A file per rank: two processes printing at once can interleave their lines.
        open(os.path.join({str(tmp_path)!r}, "rank" + os.environ["RANK"] + ".done"), "w").write(str(path))
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        capture_output=True, text=True, timeout=240, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    done = {rank: (tmp_path / f"rank{rank}.done").read_text() for rank in (0, 1)}
    state = load_train_state(out / "last_state.pt")
    assert state["iteration"] == 3 and state["world_size"] == 2
    assert [r["iteration"] for r in read_metrics(out)] == [1, 2, 3]  # rank 0 alone writes
    assert [r["iteration"] for r in read_metrics(out, "val")] == [2, 3]  # rank 0 validates, the others wait
    assert (out / "best.pth").is_file() and done[0] == str(out / "best.pth") and done[1]
    model = load_model(out / "last.pth")
    assert model.config.input_size == SIZE


@pytest.mark.slow
def test_ddp_run_that_goes_bad_on_one_process_stops_on_all(tiny, tmp_path):
    """Process 1 alone sees a non-finite loss at its second step: both processes stop with TrainingDiverged at
    that step (before, process 0 waited forever in the next all-reduce), each saying which process went bad."""
    script = tmp_path / "run_ddp.py"
    script.write_text(textwrap.dedent(f"""
        import math, os
        from yolactedge.train import train
        from yolactedge.train.health import TrainingDiverged
        from yolactedge.train.trainer import Trainer

        step = Trainer.step
        def poisoned_step(self, iteration, images, targets):
            values, taken = step(self, iteration, images, targets)
            if self.dist.rank == 1 and iteration == 1:
                values = {{**values, "T": math.nan}}
            return values, taken
        Trainer.step = poisoned_step
        try:
            train({str(tiny)!r}, iters=6, batch_size=1, input_size={SIZE}, out_dir={str(tmp_path / "out")!r},
                  threads=1, progress=False, log_every=1)
        except TrainingDiverged as error:
            open(os.path.join({str(tmp_path)!r}, "rank" + os.environ["RANK"]), "w").write(str(error))
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        capture_output=True, text=True, timeout=240, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    errors = [(tmp_path / f"rank{rank}").read_text() for rank in (0, 1)]
    assert errors[0].startswith("training diverged at iteration 2: process 1 of 2 went bad")
    assert errors[1].startswith("training diverged at iteration 2: the loss is not finite (T=nan)")


def test_adamw_run_resumes_with_adamw(tiny, tmp_path):
    out = tmp_path / "adamw"
    kw = dict(iters=4, batch_size=2, lr=1e-3, warmup_iters=1, save_every=2, optimizer_name="adamw", **COMMON)
    train(tiny, out_dir=out, **kw)
    state = load_train_state(out / "last_state.pt")
    assert state["optimizer_name"] == "adamw"
    assert "exp_avg_sq" in next(iter(state["optimizer"]["state"].values()))  # Adam moments, not SGD momentum
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        train(tiny, out_dir=tmp_path / "bad", **{**kw, "optimizer_name": "lion"})


def test_training_starts_from_imagenet_backbone_weights(tiny, tmp_path, capsys):
    source = build_model("yolact_edge_demo", input_size=SIZE)
    values = [v for k, v in source.backbone.state_dict().items() if not k.endswith("num_batches_tracked")]
    imagenet = tmp_path / "mobilenet_v2.pth"
    torch.save({**{f"features.{i}": v for i, v in enumerate(values)}, "classifier.1.weight": torch.zeros(1000, 1280)},
               imagenet)
    out = tmp_path / "bb"
    train(tiny, backbone_weights=imagenet, iters=1, batch_size=2, out_dir=out, lr=1e-9, warmup_iters=0, seed=5,
          **COMMON)
    trained = read_state_dict(out / "last.pth")
    key = "backbone.layers.3.0.conv.1.0.weight"
    torch.testing.assert_close(trained[key], source.state_dict()[key], rtol=0, atol=1e-6)
    assert f"backbone initialised from {imagenet}" in capsys.readouterr().out
