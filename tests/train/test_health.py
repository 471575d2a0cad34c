"""A run that goes bad stops with one error line and keeps its last good checkpoint; streaks of skipped steps
are reported while they happen."""
import json
import math

import pytest
import torch

from yolactedge import load_model
from yolactedge.cli import main
from yolactedge.train import load_train_state, train
from yolactedge.train.health import SKIP_REPORT_EVERY

SIZE = 64


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from yolactedge.data import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("data") / "tiny", 2, seed=3, image_size=SIZE, progress=False)


def test_diverging_run_stops_with_one_line_and_keeps_the_last_good_checkpoint(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    # SGD at lr 10: the first step is taken at the warm-up's 1.0 and is still healthy; the next ones explode.
    code = main(["train", "--data", str(tiny), "--out", str(out), "--imgsz", str(SIZE), "--iters", "30",
                 "--batch", "2", "--lr", "10", "--save-every", "1", "--threads", "1"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert code == 1 and len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith("error: training diverged at iteration ")
    diverged_at = int(errors[0].split("iteration ")[1].split(":")[0])
    saved_at = json.loads((out / "last.json").read_text())["training"]["iteration"]
    assert 1 <= saved_at < diverged_at and f"(iteration {saved_at}) is kept" in errors[0]
    assert load_train_state(out / "last_state.pt")["iteration"] == saved_at
    model = load_model(out / "last.pth")
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())
    assert max(float(m.running_var.max()) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)) < 1e6


def test_streaks_of_skipped_steps_are_reported(tiny, tmp_path, capsys, monkeypatch):
    clip = torch.nn.utils.clip_grad_norm_

    def non_finite_norm(params, max_norm, *args, **kwargs):
        clip(params, max_norm, *args, **kwargs)
        return torch.tensor(math.inf)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", non_finite_norm)
    iters = 2 * SKIP_REPORT_EVERY + 3
    train(tiny, out_dir=tmp_path / "run", input_size=SIZE, iters=iters, batch_size=1, threads=1, progress=False,
          log_every=iters)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning")]
    assert warnings == [
        f"warning: {n} consecutive steps skipped for non-finite gradients (iteration {n}); "
        "lower --lr or add --clip-grad if this goes on" for n in (SKIP_REPORT_EVERY, 2 * SKIP_REPORT_EVERY)
    ]
