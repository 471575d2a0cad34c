"""The files in a run folder are what their names say: the resume state is refused as a model (naming last.pth),
and a new run does not silently overwrite or mix with an earlier one."""
import json

import pytest

from yolactedge import load_model
from yolactedge.cli import main
from yolactedge.model import CheckpointError
from yolactedge.train import train

SIZE = 64


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from yolactedge.data import generate_dataset

    data = generate_dataset(tmp_path_factory.mktemp("data") / "tiny", 2, seed=3, image_size=SIZE, progress=False)
    out = tmp_path_factory.mktemp("runs") / "run"
    train(data, out_dir=out, input_size=SIZE, iters=1, batch_size=2, threads=1, progress=False)
    return data, out


def error_lines(err):
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("error")]


def test_resume_state_is_refused_as_a_model_naming_last_pth(run, capsys):
    data, out = run
    with pytest.raises(CheckpointError, match="training resume state .* load .*last.pth instead"):
        load_model(out / "last_state.pt")
    assert load_model(out / "last.pth").config.input_size == SIZE
    for argv in (["info", str(out / "last_state.pt")],
                 ["val", "--model", str(out / "last_state.pt"), "--images", str(data / "images"),
                  "--annotations", str(data / "annotations.json")],
                 ["export", str(out / "last_state.pt"), "--format", "onnx"]):
        code = main(argv)
        lines = error_lines(capsys.readouterr().err)
        assert code != 0 and len(lines) == 1 and f"load {out / 'last.pth'} instead" in lines[0], (argv, lines)


def test_training_into_a_folder_with_a_run_needs_resume_or_exist_ok(run, capsys):
    data, out = run
    before = (out / "last.pth").read_bytes()
    common = ["train", "--data", str(data), "--out", str(out), "--imgsz", str(SIZE), "--batch", "2", "--threads", "1"]
    code = main([*common, "--iters", "1"])
    lines = error_lines(capsys.readouterr().err)
    assert code != 0 and len(lines) == 1 and "already holds a run" in lines[0] and "--exist-ok" in lines[0]
    assert (out / "last.pth").read_bytes() == before

    code = main([*common, "--iters", "2", "--exist-ok"])
    printed = capsys.readouterr().out
    assert code == 0 and f"replacing the run in {out}" in printed
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [2]  # the earlier run's lines are gone, not mixed in
    assert json.loads((out / "last.json").read_text())["training"]["iteration"] == 2
