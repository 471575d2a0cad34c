"""The CLI: every bad input ends in one `error:` line and a non-zero exit, never a traceback."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from yolactedge import __version__
from yolactedge.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, fragment):
    assert code != 0
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert len(lines) == 1 and fragment in lines[0], err
    assert "Traceback" not in err


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--no-such-option"])
    assert exit_info.value.code == 2


def test_info_describes_a_checkpoint(capsys, tiny_checkpoint):
    code, out, _ = run(capsys, "info", str(tiny_checkpoint))
    assert code == 0
    assert "mobilenetv2" in out and "classes     6 (circle" in out
    assert "output      scores  float32 [1, 6, " in out


@pytest.mark.parametrize("content, fragment", [(None, "no such model file"), (b"garbage", "not a PyTorch checkpoint")])
def test_info_bad_files(capsys, tmp_path, content, fragment):
    path = tmp_path / "model.pth"
    if content is not None:
        path.write_bytes(content)
    code, _, err = run(capsys, "info", str(path))
    assert_one_line_error(code, err, fragment)


def test_info_names_a_corrupt_tflite_file(capsys, tmp_path):
    pytest.importorskip("ai_edge_litert")
    path = tmp_path / "model.tflite"
    path.write_bytes(b"garbage" * 20)
    code, _, err = run(capsys, "info", str(path))
    assert_one_line_error(code, err, f"{path}: not a readable TFLite model")


@pytest.mark.parametrize("content, fragment", [(None, "no such TFLite file"),
                                               (b"garbage", "not a readable TFLite model")])
def test_verify_only_bad_files(capsys, tmp_path, content, fragment):
    pytest.importorskip("ai_edge_litert")
    from yolactedge.modelmeta import MetadataError, read_tflite_metadata

    path = tmp_path / "model.tflite"
    if content is not None:
        path.write_bytes(content)
        with pytest.raises(MetadataError, match="unreadable"):  # a truncated flatbuffer, not a struct.error
            read_tflite_metadata(path)
    code, _, err = run(capsys, "export", str(path), "--verify-only", "--reference", "demo")
    assert_one_line_error(code, err, fragment)


def test_predict_skips_unreadable_images_and_fails_at_the_end(capsys, tmp_path, tiny_checkpoint):
    images = tmp_path / "in put ü"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.full((40, 60, 3), 90, np.uint8))
    (images / "b.jpg").write_bytes(b"not a jpeg")
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, "predict", str(images), "--model", str(tiny_checkpoint), "--out", str(out_dir),
                         "--save-json", str(tmp_path / "res.json"))
    assert_one_line_error(code, err, "1 input could not be read")
    assert (out_dir / "a.jpg").is_file()
    assert (tmp_path / "res.json").is_file()
    assert "1 images" in out


def test_predict_missing_source_and_model(capsys, tmp_path, tiny_checkpoint):
    code, _, err = run(capsys, "predict", str(tmp_path / "nothing.jpg"), "--model", str(tiny_checkpoint))
    assert code != 0 and "Traceback" not in err
    code, _, err = run(capsys, "predict", str(tmp_path), "--model", str(tmp_path / "missing.onnx"))
    assert code != 0 and "Traceback" not in err


def test_val_refuses_limit_zero(capsys, tmp_path, tiny_checkpoint):
    ann = tmp_path / "ann.json"
    ann.write_text('{"images": [], "annotations": [], "categories": []}')
    code, _, err = run(capsys, "val", "--model", str(tiny_checkpoint), "--images", str(tmp_path),
                       "--annotations", str(ann), "--limit", "0")
    assert_one_line_error(code, err, "at least 1")


def test_export_refuses_unsupported_pairs(capsys, tiny_checkpoint):
    code, _, err = run(capsys, "export", str(tiny_checkpoint), "--format", "onnx", "--precision", "int8")
    assert code != 0 and "Traceback" not in err and err.startswith("error")
    for precision in ("fp32", "int16x8"):
        code, _, err = run(capsys, "export", str(tiny_checkpoint), "--precision", precision, "--target", "imx93")
        assert_one_line_error(code, err, f"use --precision int8, not {precision}")


def test_export_unknown_target_lists_the_targets(capsys, tiny_checkpoint):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(tiny_checkpoint), "--target", "rpi5"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'rpi5' (choose from 'cpu', 'imx8mp', 'imx93')" in err and "Traceback" not in err


def test_bench_and_synth_bad_numbers(capsys, tmp_path, tiny_checkpoint):
    code, _, err = run(capsys, "bench", "--model", str(tmp_path / "none.tflite"))
    assert_one_line_error(code, err, "no such model file")
    code, _, err = run(capsys, "bench", "--model", str(tiny_checkpoint), "--threads", "two")
    assert_one_line_error(code, err, "comma-separated integers")
    code, _, err = run(capsys, "data", "synth", "--out", str(tmp_path / "d"), "--images", "0")
    assert_one_line_error(code, err, "at least 1")
    code, _, err = run(capsys, "data", "synth", "--out", str(tmp_path / "d"), "--images", "2", "--workers", "-1")
    assert_one_line_error(code, err, "at least 0")


def test_train_device(capsys, tmp_path):
    import torch

    from yolactedge.data import generate_dataset

    data = generate_dataset(tmp_path / "data", 2, seed=3, image_size=96, progress=False)
    common = ("train", "--data", str(data), "--imgsz", "96", "--iters", "1", "--batch", "2", "--out")
    code, _, err = run(capsys, *common, str(tmp_path / "tpu"), "--device", "tpu")
    assert_one_line_error(code, err, "give auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        code, _, err = run(capsys, *common, str(tmp_path / "gpu"), "--device", "cuda")
        assert_one_line_error(code, err, "no CUDA GPU is available")
    assert not (tmp_path / "tpu").exists() and not (tmp_path / "gpu").exists()
    code, out, _ = run(capsys, *common, str(tmp_path / "cpu"), "--device", "cpu", "--threads", "1")
    assert code == 0 and "on cpu" in out and (tmp_path / "cpu" / "last.pth").is_file()


def test_compare_interval_needs_two_models_and_enough_resamples(capsys, tmp_path):
    args = ["compare", "--images", str(tmp_path), "--annotations", str(tmp_path / "a.json")]
    code, _, err = run(capsys, *args, "--model", "demo", "--interval", "300")
    assert_one_line_error(code, err, "give at least two --model")
    code, _, err = run(capsys, *args, "--model", "demo", "--model", "demo", "--interval", "5")
    assert_one_line_error(code, err, "--interval 20 or more")
