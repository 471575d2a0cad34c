"""The shipped demo model keeps the accuracy bar it was trained for, on held-out images generated here."""
import pytest

pytest.importorskip("torch")
pytest.importorskip("pycocotools")

from yolactedge.data import generate_dataset  # noqa: E402
from yolactedge.evaluate import PROTOCOL, evaluate  # noqa: E402
from yolactedge.runtime import Detector  # noqa: E402

HELD_OUT_SEED = 20261126  # never used for training (README, "The demo model")


@pytest.mark.slow
def test_demo_model_meets_the_ap_bar_on_held_out_images(tmp_path):
    data = generate_dataset(tmp_path / "val", 100, seed=HELD_OUT_SEED, progress=False)
    detector = Detector("demo", num_threads=2, **PROTOCOL)
    result = evaluate(detector, data / "images", data / "annotations.json", progress=False)
    assert result.images_evaluated == 100
    assert result.metrics["segm"]["AP"] >= 0.50
    assert result.metrics["bbox"]["AP"] >= 0.55
