"""Each runtime extra, installed alone in a fresh environment, runs the verbs it promises (slow: it installs)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def fresh_env(folder: Path, extra: str) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"{REPO}[{extra}]"], check=True,
                   capture_output=True, text=True)
    return python


def yolactedge(python: Path, *args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", "yolactedge.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def inputs(folder: Path) -> tuple[Path, Path]:
    images = folder / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(images / f"{i}.jpg"), rng.integers(0, 255, (90, 120, 3), np.uint8))
    video = folder / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (120, 90))
    for i in range(4):
        writer.write(np.full((90, 120, 3), 30 * i, np.uint8))
    writer.release()
    return images, video


@pytest.mark.slow
@pytest.mark.parametrize("extra, model_fixture", [("litert", "tiny_tflite"), ("onnx", "tiny_onnx")])
def test_a_runtime_extra_alone_predicts_on_images_and_video(tmp_path, request, extra, model_fixture):
    model = request.getfixturevalue(model_fixture)
    model = model["int8"] if isinstance(model, dict) else model
    python = fresh_env(tmp_path / "env", extra)
    missing = subprocess.run([str(python), "-c", "import importlib.util as u; print([m for m in "
                              "('torch', 'tensorflow', 'pycocotools') if u.find_spec(m)])"],
                             capture_output=True, text=True, check=True)
    assert missing.stdout.strip() == "[]"
    images, video = inputs(tmp_path)
    done = yolactedge(python, "predict", images, video, "--model", model, "--conf", "0.05", "--save-json",
                      tmp_path / "res.json", "--out", tmp_path / "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "res.json").read_text())
    assert {r["file_name"].split("#")[0] for r in results} <= {str(images / "0.jpg"), str(images / "1.jpg"), str(video)}
    assert (tmp_path / "out" / "clip.mp4").is_file()
    tracked = yolactedge(python, "predict", video, "--model", model, "--track", "--save-json", tmp_path / "t.json",
                         "--no-draw", cwd=tmp_path)
    assert tracked.returncode == 0, tracked.stderr
    annotations = tmp_path / "a.json"
    annotations.write_text(json.dumps({"images": [{"id": 1, "file_name": "0.jpg", "width": 120, "height": 90}],
                                       "annotations": [], "categories": [{"id": 1, "name": "circle"}]}))
    val = yolactedge(python, "val", "--model", model, "--images", images, "--annotations", annotations,
                     cwd=tmp_path)
    assert val.returncode == 1 and 'pip install "yolactedge[eval]"' in val.stderr
    errors = [line for line in val.stderr.splitlines() if line.startswith("error")]
    assert "Traceback" not in val.stderr and len(errors) == 1 and "INFO" not in val.stderr
