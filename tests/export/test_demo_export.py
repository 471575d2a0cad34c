"""The demo model exported as users export it: each file, copied alone, still knows its class names."""
from __future__ import annotations

import shutil
import warnings

import pytest

pytest.importorskip("onnx2tf")
pytest.importorskip("ai_edge_litert")

from yolactedge.config import DEMO_CLASSES  # noqa: E402
from yolactedge.export import export_model  # noqa: E402
from yolactedge.runtime import Detector  # noqa: E402


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # synthetic calibration images
        tflite = export_model("demo", "tflite", precision="int8", calib_count=20, output=out / "demo_int8.tflite",
                              progress=False)
        onnx = export_model("demo", "onnx", output=out / "demo.onnx", progress=False)
    return {"tflite": tflite, "onnx": onnx}


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_a_file_copied_alone_keeps_its_class_names(demo_files, fmt, tmp_path):
    alone = tmp_path / demo_files[fmt].path.name
    shutil.copyfile(demo_files[fmt].path, alone)
    assert sorted(p.name for p in tmp_path.iterdir()) == [alone.name]  # no sidecar beside it
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no warning about missing names
        assert Detector(alone).class_names == DEMO_CLASSES
