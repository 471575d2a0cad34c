"""`train --resume` continues the run it finds: every setting that defines the run comes from the saved state;
a flag that contradicts it is a one-line error naming the flag; a longer --iters extends the run."""
import json

import pytest

from yolactedge.cli import main
from yolactedge.train import load_train_state, train

SIZE = 64


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from yolactedge.data import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("data") / "tiny", 2, seed=3, image_size=SIZE, progress=False)


def cli(capsys, *argv):
    code = main(["train", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err):
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_resume_restores_every_setting_and_longer_iters_extend(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = cli(capsys, "--data", tiny, "--out", out, "--imgsz", SIZE, "--clip-grad", 100,
                       "--optimizer", "adamw", "--iters", 2, "--batch", 2, "--lr", 2e-3, "--max-expand", 1.5,
                       "--seed", 4, "--threads", 1)
    assert code == 0, err
    code, printed, err = cli(capsys, "--data", tiny, "--out", out, "--resume", "--iters", 3, "--threads", 1)
    assert code == 0, err
    assert "extending the run from 2 to 3 iterations" in printed
    assert "input 64" in printed and "resuming" in printed
    state = load_train_state(out / "last_state.pt")
    assert state["iteration"] == 3 and state["schedule"]["max_iter"] == 3
    assert json.loads(state["config"])["input_size"] == SIZE
    assert state["clip_grad_norm"] == 100 and state["optimizer_name"] == "adamw" and state["max_expand"] == 1.5
    assert state["batch_size"] == 2 and state["seed"] == 4 and state["schedule"]["lr"] == 2e-3
    assert "exp_avg_sq" in next(iter(state["optimizer"]["state"].values()))

    # Repeating the saved values is not a contradiction.
    code, _, err = cli(capsys, "--data", tiny, "--out", out, "--resume", "--lr", 2e-3, "--imgsz", SIZE, "--batch", 2,
                       "--iters", 3, "--threads", 1)
    assert code == 0, err


@pytest.mark.parametrize("flag, value", [
    ("--imgsz", 96), ("--clip-grad", 5), ("--optimizer", "sgd"), ("--lr", 0.5), ("--batch", 1), ("--seed", 0),
    ("--max-expand", 4), ("--config", "yolact_edge_mobilenetv2"), ("--iters", 1),
])
def test_contradicting_flag_on_resume_is_an_error_naming_it(tiny, tmp_path_factory, capsys, flag, value):
    out = tmp_path_factory.getbasetemp() / "contradicted"
    if not (out / "last_state.pt").is_file():
        train(tiny, out_dir=out, input_size=SIZE, clip_grad_norm=100.0, optimizer_name="adamw", iters=2,
              batch_size=2, lr=2e-3, max_expand=1.5, seed=4, threads=1, progress=False)
    code, _, err = cli(capsys, "--data", tiny, "--out", out, "--resume", flag, value, "--threads", 1)
    assert code != 0
    assert one_error_line(err).startswith(f"error: {flag}")
    assert load_train_state(out / "last_state.pt")["iteration"] == 2


def test_resume_with_data_of_other_classes_is_refused(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny, out_dir=out, input_size=SIZE, iters=1, batch_size=2, threads=1, progress=False)
    other = tmp_path / "other.json"
    ann = json.loads((tiny / "annotations.json").read_text())
    ann["categories"] = [{**c, "name": f"renamed_{c['name']}"} for c in ann["categories"]]
    other.write_text(json.dumps(ann))
    (tmp_path / "images").symlink_to(tiny / "images")
    code, _, err = cli(capsys, "--data", other, "--out", out, "--resume", "--iters", 2, "--threads", 1)
    assert code != 0 and "differ from the resumed run's" in one_error_line(err)
    assert load_train_state(out / "last_state.pt")["iteration"] == 1


def test_api_settings_without_a_flag_are_checked_too(tiny, tmp_path):
    out = tmp_path / "run"
    kw = dict(input_size=SIZE, batch_size=2, threads=1, progress=False)
    train(tiny, out_dir=out, iters=2, momentum=0.8, lr_steps=(0.5,), **kw)
    with pytest.raises(ValueError, match=r"^momentum 0.9 contradicts the run being resumed, which has momentum 0.8;"):
        train(tiny, out_dir=out, resume=True, momentum=0.9, **kw)
    with pytest.raises(ValueError, match=r"^lr_steps \(0.7, 0.9\) contradicts .* which has lr_steps \(1,\)"):
        train(tiny, out_dir=out, resume=True, lr_steps=(0.7, 0.9), **kw)
    train(tiny, out_dir=out, resume=True, momentum=0.8, lr_steps=(0.5,), epochs=2, **kw)  # 2 epochs of 2 images
    assert load_train_state(out / "last_state.pt")["iteration"] == 2
    train(tiny, out_dir=out, resume=True, epochs=3, **kw)
    state = load_train_state(out / "last_state.pt")
    assert state["iteration"] == 3 and state["momentum"] == 0.8 and state["schedule"]["lr_steps"] == [1]


def test_state_from_before_settings_were_saved_still_resumes_and_is_no_model(tiny, tmp_path):
    import torch

    from yolactedge import load_model
    from yolactedge.model import CheckpointError

    out = tmp_path / "run"
    kw = dict(input_size=SIZE, batch_size=2, threads=1, progress=False)
    train(tiny, out_dir=out, iters=1, **kw)
    state = load_train_state(out / "last_state.pt")
    for key in ("kind", "momentum", "weight_decay", "clip_grad_norm", "max_expand"):
        del state[key]  # what earlier versions wrote
    torch.save(state, out / "last_state.pt")
    with pytest.raises(CheckpointError, match="training resume state"):
        load_model(out / "last_state.pt")
    # Another trainer's wrapper of the same weights is a model, not one of our resume states.
    wrapper = {"model": state["model"], "optimizer": state["optimizer"], "iteration": state["iteration"]}
    torch.save(wrapper, tmp_path / "other_trainer.pth")
    loaded = load_model(tmp_path / "other_trainer.pth").state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state["model"].items())
    train(tiny, out_dir=out, resume=True, iters=2, **kw)
    resumed = load_train_state(out / "last_state.pt")
    assert resumed["iteration"] == 2 and resumed["momentum"] == 0.9 and resumed["max_expand"] == 4.0
