"""The Detector's API (inputs, Prediction, options, batch), preprocessing (exactness and speed), input
quantization, and the output-matching rules, mostly on the in-memory tiny PyTorch model."""
from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yolactedge.assets import DEMO_CHECKPOINT
from yolactedge.config import COCO_CLASSES
from yolactedge.postprocessing import postprocess
from yolactedge.runtime import Backend, Detector, ImageError, InputSpec, ModelError, Prediction, match_outputs
from yolactedge.runtime.backend import default_class_names, resolve_backend
from yolactedge.runtime.detector import POSTPROCESS_OPTIONS
from yolactedge.runtime.tensors import dequantize, make_input_converter

ALL_PIXELS = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)


def assert_one_line(exc: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(exc.value)
    assert message and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


@pytest.fixture(scope="module")
def detector(tiny_model) -> Detector:
    return Detector(tiny_model)


# --- the Detector ---------------------------------------------------------------------------------------------------

def test_prediction_contents(detector, scenes):
    prediction = detector(scenes[0])
    assert isinstance(prediction, Prediction)
    assert prediction.image_size == (240, 320) and prediction.source is None
    assert set(prediction.timings) == {"preprocess", "inference", "postprocess"}
    assert all(v >= 0 for v in prediction.timings.values())
    detections = prediction.detections
    assert len(prediction) == len(detections) > 0
    assert detections.masks.shape == (len(detections), 240, 320) and detections.masks.dtype == bool
    assert (detections.boxes >= 0).all() and (detections.boxes[:, 0::2] <= 320).all()
    assert (detections.boxes[:, 1::2] <= 240).all()
    assert (np.diff(detections.scores) <= 0).all()
    assert prediction.class_names == detector.class_names
    assert prediction.summary().endswith("ms)") and detections.summary(detector.class_names) in prediction.summary()


def test_raw_outputs_and_postprocess_compose(detector, scenes):
    raw = detector.raw(scenes[1])
    assert [a.shape[0] for a in raw] == [1] * 4 and all(a.dtype == np.float32 for a in raw)
    expected = postprocess(*raw, scenes[1].shape[:2])
    got = detector(scenes[1]).detections
    np.testing.assert_array_equal(got.boxes, expected.boxes)
    np.testing.assert_array_equal(got.masks, expected.masks)


def test_path_gray_and_batch_inputs(detector, scenes, tmp_path):
    path = tmp_path / "scène 1.png"
    path.write_bytes(cv2.imencode(".png", cv2.cvtColor(scenes[0], cv2.COLOR_RGB2BGR))[1].tobytes())
    from_array, from_path = detector(scenes[0]), detector(path)
    assert from_path.source == str(path)
    np.testing.assert_array_equal(from_path.detections.boxes, from_array.detections.boxes)
    np.testing.assert_array_equal(from_path.detections.masks, from_array.detections.masks)

    gray = cv2.cvtColor(scenes[2], cv2.COLOR_RGB2GRAY)
    assert detector(gray).image_size == gray.shape

    batch = detector.predict_batch([scenes[1], path, scenes[2]])
    assert [p.source for p in batch] == [None, str(path), None]
    for prediction, image in zip(batch, [scenes[1], scenes[0], scenes[2]]):
        np.testing.assert_array_equal(prediction.detections.scores, detector(image).detections.scores)
    assert detector.predict_batch([]) == []


def test_bad_images(detector, tmp_path):
    with pytest.raises(ImageError, match="uint8"):
        detector(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ImageError) as exc:
        detector(tmp_path / "missing.jpg")
    assert_one_line(exc, "no such image file")


def test_postprocess_options_pass_through(tiny_model, scenes):
    assert POSTPROCESS_OPTIONS == ("score_threshold", "iou_threshold", "nms", "top_k", "max_detections",
                                   "mask_threshold", "second_threshold")
    strict = Detector(tiny_model, score_threshold=0.5, max_detections=5, nms="standard")
    detections = strict(scenes[0]).detections
    assert 0 < len(detections) <= 5 and (detections.scores > 0.5).all()
    with pytest.raises(ModelError) as exc:
        Detector(tiny_model, score_treshold=0.5)
    assert_one_line(exc, "unknown option 'score_treshold'", "score_threshold")


def test_huge_image_goes_through(tiny_model):
    image = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    prediction = Detector(tiny_model, max_detections=2)(image)
    assert prediction.image_size == (3000, 4000)
    assert prediction.detections.masks.shape == (len(prediction), 3000, 4000)


def test_describe_and_repr(tiny_onnx, detector):
    onnx = Detector(tiny_onnx)
    text = onnx.describe()
    assert "backend     onnxruntime" in text
    assert "input       input float32 [1, 3, 128, 128] NCHW" in text
    assert "output      scores  float32 [1, 6, " in text
    assert "classes     6 (circle, triangle" in text
    assert repr(onnx).startswith("Detector(") and "onnxruntime" in repr(onnx)
    assert "output      proto   float32 [1, 32, 32, 32]" in detector.describe()  # torch: shapes from one pass


def test_demo_model():
    if DEMO_CHECKPOINT.is_file():
        assert Detector("demo").backend.name == "torch"
    else:
        with pytest.raises(ModelError) as exc:
            Detector("demo")
        assert_one_line(exc, "demo model is not installed")


def test_resolve_backend():
    assert resolve_backend("m.pth") == resolve_backend("m.PT") == resolve_backend("demo") == "torch"
    assert resolve_backend("a/b c.ONNX") == "onnxruntime"
    assert resolve_backend("x.tflite") == "litert"
    assert resolve_backend("x.bin", "tflite") == "litert"
    assert resolve_backend(object()) == "torch"
    with pytest.raises(ModelError) as exc:
        resolve_backend("model.txt")
    assert_one_line(exc, "cannot tell the backend", ".txt")
    with pytest.raises(ModelError) as exc:
        Detector("model.txt")
    assert_one_line(exc, "cannot tell the backend")


def test_default_class_names():
    assert default_class_names(80) == COCO_CLASSES
    assert default_class_names(3) == ("class0", "class1", "class2")


# --- preprocessing -------------------------------------------------------------------------------------------------

class StubBackend(Backend):
    """Only an input: enough for Detector.preprocess."""

    name = "stub"

    def __init__(self, spec: InputSpec) -> None:
        self.path, self.input_spec, self.class_names, self.output_info = "stub", spec, ("thing",), {}


def test_preprocess_is_the_documented_resize(detector):
    image = np.random.default_rng(1).integers(0, 256, (300, 500, 3), dtype=np.uint8)
    tensor = detector.preprocess(image)
    expected = cv2.resize(image, (128, 128), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)[None]
    assert tensor.dtype == np.float32 and tensor.flags.c_contiguous
    np.testing.assert_array_equal(tensor, expected.astype(np.float32))


@pytest.mark.parametrize(
    "spec",
    [InputSpec("input", (550, 550), "NCHW", np.dtype(np.float32)),
     InputSpec("input", (550, 550), "NHWC", np.dtype(np.float32)),
     InputSpec("input", (550, 550), "NHWC", np.dtype(np.int8), 1.0, -128),
     InputSpec("input", (550, 550), "NHWC", np.dtype(np.uint8), 0.9, 3)],
    ids=["nchw-float32", "nhwc-float32", "nhwc-int8", "nhwc-uint8-lut"],
)
def test_preprocess_full_hd_gives_the_model_input(detector, spec):
    """Timing lives in benchmarks/bench_preprocess.py; here, what comes out of a 1920x1080 frame."""
    stub = Detector.__new__(Detector)
    stub.backend = StubBackend(spec)
    frame = np.random.default_rng(2).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    tensor = stub.preprocess(frame)
    shape = (1, 3, 550, 550) if spec.layout == "NCHW" else (1, 550, 550, 3)
    assert tensor.dtype == spec.dtype and tensor.shape == shape
    resized = cv2.resize(frame, (550, 550), interpolation=cv2.INTER_LINEAR)
    nhwc = tensor[0].transpose(1, 2, 0) if spec.layout == "NCHW" else tensor[0]
    expected = resized if not spec.quantized else np.clip(
        np.round(resized / spec.scale) + spec.zero_point, np.iinfo(spec.dtype).min, np.iinfo(spec.dtype).max)
    np.testing.assert_array_equal(nhwc.astype(np.float64), expected.astype(np.float64))


# --- input conversion ------------------------------------------------------------------------------------------------

def test_int8_fast_path_equals_subtraction():
    spec = InputSpec("input", (16, 16), "NHWC", np.dtype(np.int8), 1.0, -128)
    tensor = make_input_converter(spec)(ALL_PIXELS)
    assert tensor.dtype == np.int8 and tensor.shape == (1, 16, 16, 3)
    np.testing.assert_array_equal(tensor[0].astype(int), ALL_PIXELS.astype(int) - 128)


def test_layouts_and_float_dtypes():
    image = np.random.default_rng(3).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    nchw = make_input_converter(InputSpec("x", (4, 6), "NCHW", np.dtype(np.float16)))(image)
    assert nchw.shape == (1, 3, 4, 6) and nchw.dtype == np.float16 and nchw.flags.c_contiguous
    np.testing.assert_array_equal(nchw[0, 2], image[..., 2])
    nhwc = make_input_converter(InputSpec("x", (4, 6), "NHWC", np.dtype(np.uint8), 1.0, 0))(image)
    np.testing.assert_array_equal(nhwc[0], image)


@settings(max_examples=60, deadline=None)
@given(scale=st.floats(0.005, 8.0), zero_point=st.integers(-300, 300),
       dtype=st.sampled_from([np.int8, np.uint8, np.int16]))
def test_quantized_input_uses_the_models_scale_and_zero_point(scale, zero_point, dtype):
    info = np.iinfo(dtype)
    zero_point = int(np.clip(zero_point, info.min, info.max))
    spec = InputSpec("x", (16, 16), "NHWC", np.dtype(dtype), scale, zero_point)
    tensor = make_input_converter(spec)(ALL_PIXELS)[0]
    expected = np.clip(np.round(ALL_PIXELS.astype(np.float64) / scale) + zero_point, info.min, info.max)
    assert tensor.dtype == dtype
    np.testing.assert_array_equal(tensor, expected.astype(dtype))


def test_dequantize():
    q = np.array([-128, 0, 127], np.int8)
    np.testing.assert_allclose(dequantize(q, 0.5, -128), [0.0, 64.0, 127.5])
    assert dequantize(q, 0.5, -128).dtype == np.float32
    f = np.array([1.5], np.float16)
    assert dequantize(f, 0.0, 0).dtype == np.float32
    with pytest.raises(ModelError, match="no quantization scale"):
        dequantize(q, 0.0, 0)


@pytest.mark.parametrize(
    ("shape", "layout", "size"),
    [([1, 3, 64, 96], "NCHW", (64, 96)), ([1, 64, 96, 3], "NHWC", (64, 96)), ([1, 3, 3, 3], "NHWC", (3, 3))],
)
def test_input_spec_layout(shape, layout, size):
    spec = InputSpec.from_shape("in", shape, np.float32, "m.onnx")
    assert (spec.layout, spec.size, spec.quantized) == (layout, size, False)


@pytest.mark.parametrize("shape", [[1, 64, 64], [1, 4, 64, 64], [1, 3, "h", "w"]])
def test_input_spec_refuses_non_images(shape):
    with pytest.raises(ModelError) as exc:
        InputSpec.from_shape("in", shape, np.float32, "m.onnx")
    assert_one_line(exc, "m.onnx", "input 'in'")


# --- output matching -------------------------------------------------------------------------------------------------

SHAPES = {"boxes": (1, 1023, 4), "scores": (1, 6, 1023), "masks": (1, 1023, 32), "proto": (1, 32, 32, 32)}


def test_outputs_by_name_ignore_case_and_tensor_suffix():
    shapes = {"Boxes:0": SHAPES["boxes"], "scores": SHAPES["scores"], "MASKS": SHAPES["masks"],
              "proto:0": SHAPES["proto"]}
    assert match_outputs(shapes, "m") == {"boxes": "Boxes:0", "scores": "scores", "masks": "MASKS",
                                          "proto": "proto:0"}


def test_outputs_by_shape_in_any_order():
    roles = list(SHAPES)
    for order in itertools.permutations(range(4)):
        shapes = {f"output_{i}": SHAPES[roles[k]] for i, k in enumerate(order)}
        mapping = match_outputs(shapes, "m")
        assert {role: shapes[name] for role, name in mapping.items()} == SHAPES


def test_outputs_by_shape_when_classes_equal_anchors():
    shapes = {"a": (1, 6, 4), "b": (1, 6, 6), "c": (1, 6, 8), "d": (1, 2, 2, 8)}
    assert match_outputs(shapes, "m") == {"boxes": "a", "scores": "b", "masks": "c", "proto": "d"}


@pytest.mark.parametrize(
    ("shapes", "fragment"),
    [({"a": (1, 10, 4), "b": (1, 3, 10), "c": (1, 10, 4), "d": (1, 5, 5, 4)}, "ambiguous"),  # 4 prototypes
     ({"logits": (1, 1000)}, "do not look like"),
     ({k: v for k, v in SHAPES.items() if k != "proto"}, "do not look like"),
     ({f"o{i}": (2, *s[1:]) for i, s in enumerate(SHAPES.values())}, "do not look like"),  # batch 2
     ({**SHAPES, "masks": (1, 1023, 16)}, "outputs named")],
    ids=["ambiguous", "classifier", "three-outputs", "batch-2", "names-with-wrong-shapes"],
)
def test_outputs_that_do_not_fit(shapes, fragment):
    with pytest.raises(ModelError) as exc:
        match_outputs(shapes, "model.tflite")
    assert_one_line(exc, "model.tflite", fragment)
