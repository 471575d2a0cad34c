"""`yolactedge predict`: results attached to the right images, videos at their own rate, thresholds checked."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from yolactedge.cli import main, missing_extra_message
from yolactedge.predict import ImageIds
from yolactedge.runtime import ImageError


@pytest.fixture()
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(folder / name), np.random.default_rng(len(name)).integers(0, 255, (48, 64, 3), np.uint8))
    return folder


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _ids_by_file(path) -> dict[str, int]:
    return {r["file_name"].rsplit("/", 1)[-1]: r["image_id"] for r in json.loads(path.read_text())}


def test_ids_come_from_the_annotations_by_file_name(capsys, tmp_path, images, tiny_checkpoint):
    annotations = tmp_path / "ann.json"
    annotations.write_text(json.dumps({"images": [{"id": 501, "file_name": "images/a.png"},
                                                  {"id": 77, "file_name": "b.png"},
                                                  {"id": 9, "file_name": "sub/c.png"}],
                                       "annotations": [], "categories": []}))
    results = tmp_path / "res.json"
    code, _, _ = run(capsys, "predict", images, "--model", tiny_checkpoint, "--no-draw", "--conf", "0",
                     "--save-json", results, "--annotations", annotations)
    assert code == 0
    assert _ids_by_file(results) == {"a.png": 501, "b.png": 77, "c.png": 9}


def test_a_skipped_file_shifts_no_other_id(capsys, tmp_path, images, tiny_checkpoint):
    first, second = tmp_path / "all.json", tmp_path / "some.json"
    assert run(capsys, "predict", images, "--model", tiny_checkpoint, "--no-draw", "--conf", "0",
               "--save-json", first)[0] == 0
    (images / "a.png").write_bytes(b"broken")
    code, _, err = run(capsys, "predict", images, "--model", tiny_checkpoint, "--no-draw", "--conf", "0",
                       "--save-json", second)
    assert code == 1 and "could not be read" in err
    before, after = _ids_by_file(first), _ids_by_file(second)
    assert set(after) == {"b.png", "c.png"} and all(after[k] == before[k] for k in after)


def test_image_ids_refuse_unknown_files_and_collisions():
    ids = ImageIds({"x/a.jpg": 4, "y/a.jpg": 5, "b.jpg": 6})
    assert ids("data/x/a.jpg") == 4 and ids("b.jpg") == 6 and ids("deep/dir/b.jpg") == 6
    with pytest.raises(ImageError, match="no image of that file name"):
        ids("a.jpg")  # two dataset images are called a.jpg: the base name alone is not enough
    stable = ImageIds()
    assert stable("p/q.jpg") == ImageIds()("p/q.jpg") != stable("p/r.jpg")


def test_annotations_without_save_json_is_refused(capsys, images, tiny_checkpoint, tmp_path):
    code, _, err = run(capsys, "predict", images, "--model", tiny_checkpoint, "--annotations", tmp_path / "a.json")
    assert code == 2 and "add --save-json" in err


def test_annotated_video_keeps_the_source_frame_rate(capsys, tmp_path, tiny_checkpoint):
    source = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    code, _, _ = run(capsys, "predict", source, "--model", tiny_checkpoint, "--out", tmp_path / "out")
    assert code == 0
    written = cv2.VideoCapture(str(tmp_path / "out" / "clip.mp4"))
    assert written.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    written.release()


@pytest.mark.parametrize("flag, value, fragment", [
    ("--conf", "2", "--conf must lie in [0, 1]"),
    ("--conf", "-0.1", "--conf must lie in [0, 1]"),
    ("--iou", "5", "--iou must lie in (0, 1]"),
    ("--iou", "0", "--iou must lie in (0, 1]"),
    ("--max-det", "-1", "--max-det must be at least 1"),
])
def test_thresholds_out_of_range_are_refused(capsys, images, tiny_checkpoint, flag, value, fragment):
    code, _, err = run(capsys, "predict", images, "--model", tiny_checkpoint, flag, value)
    assert code == 2 and err.startswith("error") and fragment in err and "Traceback" not in err


def test_api_and_cli_share_one_score_threshold(tiny_checkpoint):
    from yolactedge import Detector
    from yolactedge.cli import build_parser

    detector = Detector(str(tiny_checkpoint))
    cli_default = build_parser().parse_args(["predict", "x.jpg"]).conf
    assert detector.postprocess_options["score_threshold"] == cli_default == 0.3
    with pytest.raises(ValueError, match="IoU threshold"):
        Detector(str(tiny_checkpoint), iou_threshold=1.5)


def test_names_file_overrides_the_class_names(capsys, tmp_path, images, tiny_checkpoint):
    names = tmp_path / "names.txt"
    names.write_text("one\ntwo\nthree\nfour\nfive\nsix\n")
    results = tmp_path / "res.json"
    code, out, _ = run(capsys, "predict", images / "a.png", "--model", tiny_checkpoint, "--no-draw",
                       "--conf", "0", "--names", names, "--save-json", results)
    assert code == 0
    names.write_text("one\ntwo\n")
    code, _, err = run(capsys, "predict", images / "a.png", "--model", tiny_checkpoint, "--names", names)
    assert code == 1 and "2 class names given for a model with 6 classes" in err


def test_a_missing_optional_package_names_its_extra():
    message = missing_extra_message(ModuleNotFoundError("No module named 'pycocotools'", name="pycocotools"))
    assert message == 'this command needs pycocotools: pip install "yolactedge[eval]"'
    assert missing_extra_message(ModuleNotFoundError("x", name="somethingelse")) is None
