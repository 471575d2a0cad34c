"""The evaluation protocol on crafted detections with known AP, the category-id mapping and bad inputs."""
from __future__ import annotations

import contextlib
import io
import json

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from yolactedge.evaluate import (
    EvaluationError,
    ap_ratio_intervals,
    category_mapping,
    CompareRow,
    compare,
    evaluate,
    format_compare,
    load_ground_truth,
    resampled_ap,
)
from yolactedge.postprocessing import Detections
from yolactedge.runtime import Prediction

SIZE = (60, 80)  # H, W
# Two images; category ids deliberately not contiguous and not starting at 1.
GT_BOXES = {1: [(3, 10, 10, 30, 40)], 2: [(7, 40, 5, 75, 30), (3, 5, 35, 25, 55)]}  # id: (cat, x1, y1, x2, y2)
CATEGORIES = [{"id": 3, "name": "square"}, {"id": 7, "name": "circle"}]


def box_mask(x1, y1, x2, y2) -> np.ndarray:
    mask = np.zeros(SIZE, dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


@pytest.fixture()
def dataset(tmp_path):
    from pycocotools import mask as mask_utils

    images, annotations = [], []
    for image_id, objects in GT_BOXES.items():
        name = f"img{image_id}.png"
        cv2.imwrite(str(tmp_path / name), np.full((*SIZE, 3), 128, np.uint8))
        images.append({"id": image_id, "file_name": name, "height": SIZE[0], "width": SIZE[1]})
        for cat, x1, y1, x2, y2 in objects:
            rle = mask_utils.encode(np.asfortranarray(box_mask(x1, y1, x2, y2).astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                "segmentation": rle, "iscrowd": 0})
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return tmp_path, path


class ScriptedDetector:
    """Returns prepared detections image by image (the images are identical grey frames)."""

    class_names = ("circle", "square")  # model order differs from the dataset's id order on purpose

    def __init__(self, per_image: list[list[tuple]]) -> None:
        self.queue = list(per_image)

    def __call__(self, image):
        objects = self.queue.pop(0)
        boxes = np.array([o[1:5] for o in objects], np.float32).reshape(-1, 4)
        masks = np.array([box_mask(*o[1:5]) for o in objects]).reshape(-1, *SIZE)
        scores = [o[5] for o in objects]
        class_ids = [self.class_names.index({3: "square", 7: "circle"}[o[0]]) for o in objects]
        detections = Detections.from_masks(boxes, scores, class_ids, masks)
        return Prediction(detections, {"preprocess": 0.0, "inference": 1.0, "postprocess": 0.0}, SIZE, self.class_names)


def perfect() -> list[list[tuple]]:
    return [[(*obj, 0.9) for obj in GT_BOXES[i]] for i in sorted(GT_BOXES)]


def test_perfect_detections_score_one(dataset):
    folder, ann = dataset
    result = evaluate(ScriptedDetector(perfect()), folder, ann, progress=False)
    assert result.metrics["bbox"]["AP"] == pytest.approx(1.0)
    assert result.metrics["segm"]["AP"] == pytest.approx(1.0)
    assert {r["category_id"] for r in result.results} == {3, 7}


def test_a_better_scored_false_positive_halves_ap(dataset):
    folder, ann = dataset
    script = perfect()
    script[0].insert(0, (3, 50, 5, 70, 25, 0.95))  # a square where there is none, ranked first
    result = evaluate(ScriptedDetector(script), folder, ann, progress=False)
    # square: 2 GT; ranks FP, TP, TP → precision envelope 2/3 at every recall → AP 0.667; circle AP 1.0.
    expected = (2 / 3 + 1.0) / 2
    assert result.metrics["bbox"]["AP"] == pytest.approx(expected, abs=1e-3)
    assert result.per_class["bbox"]["square"] == pytest.approx(2 / 3, abs=1e-3)


def test_numbers_equal_pycocotools_on_the_written_results(dataset):
    folder, ann = dataset
    script = perfect()
    script[1][0] = (7, 42, 8, 75, 30, 0.6)  # a loosely placed circle
    result = evaluate(ScriptedDetector(script), folder, ann, progress=False)
    gt = load_ground_truth(ann)
    for iou_type in ("bbox", "segm"):
        results = result.results if iou_type == "bbox" else [{k: v for k, v in r.items() if k != "bbox"} for r in result.results]
        with contextlib.redirect_stdout(io.StringIO()):
            e = COCOeval(gt, gt.loadRes(json.loads(json.dumps(results))), iou_type)
            e.evaluate(), e.accumulate(), e.summarize()
        assert result.metrics[iou_type]["AP"] == pytest.approx(e.stats[0], abs=1e-12)
        assert result.metrics[iou_type]["AP75"] == pytest.approx(e.stats[2], abs=1e-12)


def test_category_mapping_by_name_by_count_and_refused(dataset):
    _, ann = dataset
    gt = load_ground_truth(ann)
    assert category_mapping(("circle", "square"), gt) == [7, 3]
    with pytest.raises(EvaluationError, match="'a', 'b' are not categories"):
        category_mapping(("a", "b"), gt)  # same count, other names: never paired silently
    with pytest.raises(EvaluationError, match="'square2' are not categories"):
        category_mapping(("circle", "square2"), gt)  # one renamed category is enough to refuse
    with pytest.warns(UserWarning, match="a→square, b→circle"):
        assert category_mapping(("a", "b"), gt, by_position=True) == [3, 7]  # asked for: sorted-id order, said
    with pytest.raises(EvaluationError, match="3 classes but the annotations have 2"):
        category_mapping(("a", "b", "c"), gt, by_position=True)


def test_coco_80_classes_map_to_ids_up_to_90():
    from yolactedge.config import COCO_CATEGORY_IDS, COCO_CLASSES

    gt = COCO()
    gt.dataset = {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for i, n in zip(COCO_CATEGORY_IDS, COCO_CLASSES)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    mapping = category_mapping(COCO_CLASSES, gt)
    assert mapping[0] == 1 and mapping[-1] == 90 and len(set(mapping)) == 80


def test_missing_images_are_reported_and_the_rest_evaluated(dataset):
    folder, ann = dataset
    (folder / "img2.png").unlink()
    with pytest.warns(UserWarning, match="1 of 2 images could not be read"):
        result = evaluate(ScriptedDetector(perfect()), folder, ann, progress=False)
    assert result.images_evaluated == 1 and len(result.missing_images) == 1
    assert result.metrics["bbox"]["AP"] == pytest.approx(1.0)  # only image 1's ground truth counts


def test_bad_inputs_are_refused(dataset, tmp_path):
    folder, ann = dataset
    with pytest.raises(EvaluationError, match="at least 1"):
        evaluate(ScriptedDetector(perfect()), folder, ann, limit=0, progress=False)
    with pytest.raises(EvaluationError, match="no such annotation file"):
        evaluate(ScriptedDetector(perfect()), folder, tmp_path / "nope.json", progress=False)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(EvaluationError, match="not valid JSON"):
        evaluate(ScriptedDetector(perfect()), folder, tmp_path / "bad.json", progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EvaluationError, match="none of the 2 annotated images"):
        with pytest.warns(UserWarning):
            evaluate(ScriptedDetector(perfect()), empty, ann, progress=False)


def test_plots_are_written_as_png(dataset, tmp_path):
    from yolactedge.evaluate import write_plots

    folder, ann = dataset
    result = evaluate(ScriptedDetector(perfect()), folder, ann, progress=False)
    paths = write_plots(result, tmp_path / "plots")
    assert sorted(p.name for p in paths) == ["per_class_bbox.png", "per_class_segm.png", "pr_bbox.png", "pr_segm.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)



def loose_circle() -> list[list[tuple]]:
    script = perfect()
    script[1][0] = (7, 42, 8, 75, 30, 0.6)  # a loosely placed circle on the second image
    return script


def test_resampled_ap_reproduces_cocoeval_and_counts_repeats(dataset):
    folder, ann = dataset
    result = evaluate(ScriptedDetector(loose_circle()), folder, ann, progress=False)
    first_only = evaluate(ScriptedDetector(loose_circle()[:1]), folder, ann, progress=False, limit=1)
    for kind in ("bbox", "segm"):
        evaluator = result.evaluators[kind]
        precision = evaluator.eval["precision"].copy()
        assert resampled_ap(evaluator, np.arange(2)) == pytest.approx(result.metrics[kind]["AP"], abs=1e-12)
        # the first image twice scores as the first image alone (its detections and ground truth both double)
        assert resampled_ap(evaluator, np.array([0, 0])) == pytest.approx(first_only.metrics[kind]["AP"], abs=1e-12)
        assert np.array_equal(evaluator.eval["precision"], precision)  # left as it was, for the plots
        for params in (evaluator.params, evaluator._paramsEval):  # and its parameters too
            assert params.areaRngLbl == ["all", "small", "medium", "large"] and params.maxDets == [1, 10, 100]
            assert list(params.imgIds) == [1, 2]


def test_ap_interval_of_a_file_against_itself_is_exactly_one(dataset):
    folder, ann = dataset
    a = evaluate(ScriptedDetector(loose_circle()), folder, ann, progress=False)
    b = evaluate(ScriptedDetector(loose_circle()), folder, ann, progress=False)
    assert ap_ratio_intervals(a, b, resamples=50) == {"bbox": (1.0, 1.0, 1.0), "segm": (1.0, 1.0, 1.0)}


def test_ap_interval_brackets_the_share_on_the_set(dataset):
    folder, ann = dataset
    reference = evaluate(ScriptedDetector(perfect()), folder, ann, progress=False)
    worse = evaluate(ScriptedDetector(loose_circle()), folder, ann, progress=False)
    intervals = ap_ratio_intervals(reference, worse, resamples=200, seed=3)
    for kind in ("bbox", "segm"):
        share, low, high = intervals[kind]
        assert share == pytest.approx(worse.metrics[kind]["AP"] / reference.metrics[kind]["AP"], abs=1e-12)
        assert share < 1
        # resamples of the first image alone (both perfect there) read 1; any with the second, the set's share
        assert low == pytest.approx(share) and high == pytest.approx(1.0)


def test_ap_interval_refuses_evaluations_of_different_images(dataset):
    folder, ann = dataset
    both = evaluate(ScriptedDetector(perfect()), folder, ann, progress=False)
    first = evaluate(ScriptedDetector(perfect()[:1]), folder, ann, progress=False, limit=1)
    with pytest.raises(EvaluationError, match="different images"):
        ap_ratio_intervals(both, first, resamples=50)


def test_compare_interval_needs_two_models_and_enough_resamples(dataset):
    folder, ann = dataset
    with pytest.raises(EvaluationError, match="at least two models"):
        compare(["demo"], folder, ann, resamples=300)
    with pytest.raises(EvaluationError, match="20 resamples"):
        compare(["demo", "demo"], folder, ann, resamples=5)


def test_compare_opens_every_file_before_evaluating_any(dataset, monkeypatch):
    import yolactedge.evaluate as evaluate_module
    from yolactedge.runtime import ModelError

    pytest.importorskip("ai_edge_litert")
    folder, ann = dataset
    corrupt = folder / "corrupt.tflite"
    corrupt.write_bytes(b"garbage" * 20)
    evaluated = []
    monkeypatch.setattr(evaluate_module, "evaluate", lambda *args, **kwargs: evaluated.append(args))
    with pytest.raises(ModelError, match="corrupt.tflite: not a readable TFLite model"):
        compare(["demo", str(corrupt)], folder, ann, progress=False)
    assert evaluated == []


def test_compare_table_says_n_a_where_there_is_no_share():
    rows = [CompareRow("a.tflite", "litert", 1.0, 0.0, 0.5, 1.0),
            CompareRow("b.tflite", "litert", 1.0, 0.0, 0.4, 1.0,
                       {"bbox": (float("nan"),) * 3, "segm": (0.8, 0.7, 0.9)})]
    last = format_compare(rows, resamples=100).splitlines()[-1]
    assert last.startswith("b.tflite") and "box n/a" in last and "mask 80.000% (70.00% to 90.00%)" in last
