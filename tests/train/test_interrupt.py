"""Ctrl-C during training keeps the work: the finished step is saved atomically, the exit is 130, and the
printed command resumes the run to its end."""
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import yolactedge
from yolactedge import load_model
from yolactedge.train import load_train_state

SIZE = 64
CLI = [sys.executable, "-c", "import sys; from yolactedge.cli import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from yolactedge.data import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("data") / "tiny", 2, seed=3, image_size=SIZE, progress=False)


def test_sigint_saves_and_prints_a_resume_command_that_resumes(tiny, tmp_path):
    out = tmp_path / "run"
    src = str(Path(yolactedge.__file__).parents[1])  # the subprocess runs the code under test
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    # AdamW with clipping stays healthy from scratch at this size (SGD at the default lr diverges by ~35 steps).
    proc = subprocess.Popen(
        [*CLI, "train", "--data", str(tiny), "--out", str(out), "--imgsz", str(SIZE), "--batch", "1",
         "--iters", "60", "--save-every", "1000", "--optimizer", "adamw", "--clip-grad", "100", "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in proc.stdout:  # the CLI logs every 20 iterations: the first steps are done at "iter 20/"
        lines.append(line)
        if line.startswith("iter 20/"):
            proc.send_signal(signal.SIGINT)
            break
    rest, err = proc.communicate(timeout=120)
    printed = "".join(lines) + rest
    assert proc.returncode == 130, printed + err
    assert "interrupted" in err and "Traceback" not in err, err

    stopped = load_train_state(out / "last_state.pt")["iteration"]
    assert 20 <= stopped < 60
    assert json.loads((out / "last.json").read_text())["training"]["iteration"] == stopped
    assert load_model(out / "last.pth").config.input_size == SIZE
    assert not list(out.glob(".*.tmp"))
    resume_line = next(line for line in printed.splitlines() if f"interrupted at iteration {stopped}/60" in line)
    command = shlex.split(resume_line.split("resume with: ")[1])
    assert command[:2] == ["yolactedge", "train"] and "--resume" in command

    resumed = subprocess.run([*CLI, *command[1:], "--threads", "1"], capture_output=True, text=True, env=env,
                             check=False, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"resuming {out} at iteration {stopped}/60" in resumed.stdout
    assert load_train_state(out / "last_state.pt")["iteration"] == 60


@pytest.mark.parametrize("flag", ["--save-every", "--val-every", "--val-limit", "--batch"])
def test_interval_and_count_flags_must_be_positive(tiny, tmp_path, capsys, flag):
    from yolactedge.cli import main

    code = main(["train", "--data", str(tiny), "--out", str(tmp_path / "run"), flag, "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == f"error: {flag} must be at least 1, got 0"
    assert not (tmp_path / "run").exists()
