"""`train --val-data` with other classes than the training data fails before the first step, in one line."""
import json

import pytest

from yolactedge.cli import main

SIZE = 64


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from yolactedge.data import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("data") / "tiny", 2, seed=3, image_size=SIZE, progress=False)


def with_categories(tiny, path, change):
    ann = json.loads((tiny / "annotations.json").read_text())
    path.parent.mkdir()
    ann["categories"] = change(ann["categories"])
    kept = {c["id"] for c in ann["categories"]}
    ann["annotations"] = [a for a in ann["annotations"] if a["category_id"] in kept]
    path.write_text(json.dumps(ann))
    (path.parent / "images").symlink_to(tiny / "images")
    return path


@pytest.mark.parametrize("change, what", [
    (lambda cats: cats[:-1], "5 classes"),
    (lambda cats: [{**c, "name": c["name"].upper()} for c in cats], "6 classes"),
])
def test_val_data_with_other_classes_fails_before_training(tiny, tmp_path, capsys, change, what):
    val = with_categories(tiny, tmp_path / "val" / "annotations.json", change)
    out = tmp_path / "run"
    code = main(["train", "--data", str(tiny), "--val-data", str(val), "--out", str(out), "--imgsz", str(SIZE),
                 "--iters", "2", "--batch", "2", "--threads", "1"])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("error")]
    assert code != 0 and len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith(f"error: --val-data {val}: its {what}")
    assert "differ from the training data's 6" in lines[0]
    assert "training" not in captured.out and not out.exists()
