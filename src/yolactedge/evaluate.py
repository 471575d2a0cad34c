"""COCO box and mask mAP of any model file, with the original YOLACT evaluation protocol.

Protocol: score prefilter 0.05, Fast NMS at IoU 0.5 exactly as the original's (no second threshold), top_k 200,
at most 100 detections per image, masks
cropped at prototype resolution then resized to the original image, RLE-encoded. Metrics come from
pycocotools' COCOeval, never from our own arithmetic.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
MIN_RESAMPLES = 20  # fewer make a 95% interval of two or three samples' ends
PROTOCOL = dict(score_threshold=0.05, iou_threshold=0.5, nms="fast", top_k=200, max_detections=100, second_threshold=False)


class EvaluationError(ValueError):
    """The evaluation would be meaningless (no images, class mismatch...); the message says why."""


@dataclass
class EvalResult:
    metrics: dict[str, dict[str, float]]  # {"bbox": {"AP": ...}, "segm": {...}}
    per_class: dict[str, dict[str, float]]  # {"bbox": {class_name: AP}, "segm": {...}}
    images_evaluated: int
    missing_images: list[str] = field(default_factory=list)
    results: list[dict] = field(default_factory=list, repr=False)
    inference_ms: list[float] = field(default_factory=list, repr=False)  # per image, the runtime call alone
    evaluators: dict = field(default_factory=dict, repr=False)  # the COCOeval objects, for plots


def load_ground_truth(annotation_file: str | os.PathLike):
    """A pycocotools COCO object, with its chatter silenced and failures turned into one-line errors."""
    path = Path(annotation_file)
    if not path.is_file():
        raise EvaluationError(f"{path}: no such annotation file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations", "categories")):
        raise EvaluationError(f"{path}: not a COCO annotation file (needs images, annotations, categories)")
    return ground_truth(data)


def ground_truth(data: dict):
    """A pycocotools COCO object over an annotation dict already in memory."""
    from pycocotools.coco import COCO

    gt = COCO()
    gt.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def category_mapping(class_names: tuple[str, ...] | list[str], gt, *, by_position: bool = False) -> list[int]:
    """Dataset category id for each model class index, matched by exact name.

    A model class the annotations do not name is refused: scoring classes against the wrong ground truth gives
    numbers that look plausible and mean nothing. `by_position` pairs classes with categories in sorted-id order
    instead (the counts must agree) and says so in a warning that lists the pairs.
    """
    cats = sorted(gt.loadCats(gt.getCatIds()), key=lambda c: c["id"])
    if by_position:
        if len(cats) != len(class_names):
            raise EvaluationError(f"the model has {len(class_names)} classes but the annotations have {len(cats)} "
                                  "categories; they cannot be paired by position")
        pairs = ", ".join(f"{n}→{c['name']}" for n, c in zip(class_names, cats) if n != c["name"])
        if pairs:
            warnings.warn(f"classes paired with categories by position: {pairs}", stacklevel=2)
        return [c["id"] for c in cats]
    by_name = {c["name"]: c["id"] for c in cats}
    unknown = [name for name in class_names if name not in by_name]
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise EvaluationError(
            f"model classes {shown} are not categories of the annotations ({len(cats)} categories); rename them "
            "(--names FILE) or pair classes with categories in id order (--categories-by-position)"
        )
    return [by_name[name] for name in class_names]


def coco_stats(gt, results: list[dict], iou_type: str) -> tuple[dict[str, float], dict[int, float], "object"]:
    """Run COCOeval on `results` and return the 12 summary stats by name plus AP per category id."""
    from pycocotools.cocoeval import COCOeval

    if iou_type == "segm":  # a bbox key would make loadRes take the segm area from the box
        results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    results = copy.deepcopy(results)  # loadRes adds keys to the dicts it is given
    if not results:
        return {name: 0.0 for name in STAT_NAMES}, {}, None
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        evaluator = COCOeval(gt, dt, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = {name: float(v) for name, v in zip(STAT_NAMES, evaluator.stats)}
    precision = evaluator.eval["precision"]  # [T, R, K, A, M]
    per_class = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        p = precision[:, :, k, 0, -1]
        per_class[cat_id] = float(p[p > -1].mean()) if (p > -1).any() else float("nan")
    return stats, per_class, evaluator


def evaluate(
    detector,
    images_dir: str | os.PathLike,
    annotation_file: str | os.PathLike,
    *,
    limit: int | None = None,
    progress: bool = True,
    categories_by_position: bool = False,
) -> EvalResult:
    """Evaluate a `yolactedge.Detector` (configured with the protocol) on a COCO-format dataset.

    Images listed in the annotations but missing on disk are reported and skipped; if none is left the
    evaluation stops with an error instead of reporting a silent 0.0 AP.
    """
    from tqdm import tqdm

    from .runtime.images import ImageError, load_image

    if limit is not None and limit < 1:
        raise EvaluationError(f"--limit must be at least 1, got {limit}")
    gt = load_ground_truth(annotation_file)
    cat_ids = category_mapping(detector.class_names, gt, by_position=categories_by_position)
    image_infos = sorted(gt.loadImgs(gt.getImgIds()), key=lambda i: i["id"])
    if limit is not None:
        image_infos = image_infos[:limit]
    if not image_infos:
        raise EvaluationError(f"{annotation_file}: lists no images")
    images_dir = Path(images_dir)
    results: list[dict] = []
    missing: list[str] = []
    evaluated: list[int] = []
    inference_ms: list[float] = []
    for info in tqdm(image_infos, desc="evaluating", unit="img", disable=not progress):
        path = images_dir / info["file_name"]
        try:
            image = load_image(path)
        except ImageError:
            missing.append(str(path))
            continue
        prediction = detector(image)
        inference_ms.append(prediction.timings["inference"])
        results.extend(prediction.detections.to_coco_json(info["id"], category_ids=cat_ids))
        evaluated.append(info["id"])
    if missing:
        warnings.warn(f"{len(missing)} of {len(image_infos)} images could not be read (first: {missing[0]})", stacklevel=2)
    if not evaluated:
        raise EvaluationError(f"none of the {len(image_infos)} annotated images could be read under {images_dir}")
    return score_results(gt, results, evaluated, cat_ids, detector.class_names, missing, inference_ms)


def score_results(gt, results: list[dict], evaluated: list[int], cat_ids: list[int], class_names,
                  missing: list[str], inference_ms: list[float]) -> EvalResult:
    """Box and mask COCO metrics of `results` against the ground truth of the images actually evaluated."""
    gt_subset = _restrict(gt, evaluated)
    names = {cid: name for cid, name in zip(cat_ids, class_names)}
    metrics, per_class, evaluators = {}, {}, {}
    for iou_type in ("bbox", "segm"):
        stats, by_cat, evaluators[iou_type] = coco_stats(gt_subset, results, iou_type)
        metrics[iou_type] = stats
        per_class[iou_type] = {names.get(cid, str(cid)): ap for cid, ap in by_cat.items()}
    return EvalResult(metrics, per_class, len(evaluated), missing, results, inference_ms, evaluators)


def _restrict(gt, image_ids: list[int]):
    """The ground truth limited to the images actually evaluated (so a --limit does not count as misses)."""
    from pycocotools.coco import COCO

    keep = set(image_ids)
    data = gt.dataset
    subset = COCO()
    subset.dataset = {
        **data,
        "images": [i for i in data["images"] if i["id"] in keep],
        "annotations": [a for a in data["annotations"] if a["image_id"] in keep],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        subset.createIndex()
    return subset


def format_metrics(result: EvalResult) -> str:
    header = f"{'':6}" + "".join(f"{name:>8}" for name in STAT_NAMES[:6])
    rows = [header]
    for iou_type in ("bbox", "segm"):
        stats = result.metrics[iou_type]
        rows.append(f"{('box' if iou_type == 'bbox' else 'mask'):6}" + "".join(f"{stats[n]:8.3f}" for n in STAT_NAMES[:6]))
    return "\n".join(rows)


def write_plots(result: EvalResult, out_dir: str | os.PathLike) -> list[Path]:
    """Precision-recall curves (IoU 0.50 and 0.75) and a per-class AP bar chart, as PNG files, drawn from the
    evaluation's own COCOeval state (nothing is evaluated again)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for iou_type in ("bbox", "segm"):
        evaluator = result.evaluators.get(iou_type)
        if evaluator is None:
            continue
        precision = evaluator.eval["precision"][:, :, :, 0, -1]  # [T, R, K]
        recall = evaluator.params.recThrs
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for t, label in ((0, "IoU 0.50"), (5, "IoU 0.75")):
            p = precision[t].copy()
            p[p < 0] = np.nan
            ax.plot(recall, np.nanmean(p, axis=1), label=label)
        ax.set(xlabel="recall", ylabel="precision", title=f"{iou_type} precision-recall (mean over classes)")
        ax.legend()
        path = out_dir / f"pr_{iou_type}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
        names = list(result.per_class[iou_type])
        values = [result.per_class[iou_type][n] for n in names]
        fig, ax = plt.subplots(figsize=(max(6, 0.3 * len(names)), 4))
        ax.bar(range(len(names)), values)
        ax.set_xticks(range(len(names)), names, rotation=90)
        ax.set(ylabel="AP@[.5:.95]", title=f"{iou_type} AP per class")
        path = out_dir / f"per_class_{iou_type}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def resampled_ap(evaluator, sample: np.ndarray) -> float:
    """COCO AP (IoU 0.5:0.95, all areas, 100 detections) over the images at positions `sample` of the evaluator's
    image list (repeats count again), accumulated by pycocotools from its own per-image matches (`evalImgs`, laid
    out [category][area range][image]); the evaluator is left as it was."""
    params, evaluated = evaluator.params, evaluator._paramsEval
    fields = ("imgIds", "areaRng", "areaRngLbl", "maxDets")
    saved = evaluator.evalImgs, evaluator.eval, [{f: getattr(p, f) for f in fields} for p in (params, evaluated)]
    images, areas = len(evaluated.imgIds), len(evaluated.areaRng)
    everywhere = evaluated.areaRngLbl.index("all")
    only = {"imgIds": list(range(len(sample))),  # distinct ids: a repeat counts twice
            "areaRng": [evaluated.areaRng[everywhere]], "areaRngLbl": ["all"], "maxDets": [evaluated.maxDets[-1]]}
    try:
        # Only the area range and detection limit that AP uses are accumulated (a twelfth of the work, the same
        # numbers: the per-image matches were made at the largest limit).
        evaluator.evalImgs = [saved[0][(category * areas + everywhere) * images + i]
                              for category in range(len(saved[0]) // (areas * images)) for i in sample]
        for p in (params, evaluated):
            for field, value in only.items():
                setattr(p, field, value)
        with contextlib.redirect_stdout(io.StringIO()):  # accumulate() prints its timing
            evaluator.accumulate()
        precision = evaluator.eval["precision"][:, :, :, 0, 0]
    finally:
        evaluator.evalImgs, evaluator.eval = saved[0], saved[1]
        for p, values in zip((params, evaluated), saved[2]):
            for field, value in values.items():
                setattr(p, field, value)
    return float(precision[precision > -1].mean()) if (precision > -1).any() else 0.0


def ap_ratio_intervals(reference: EvalResult, other: EvalResult, *, resamples: int, seed: int = 0,
                       confidence: float = 0.95, progress: bool = False) -> dict[str, tuple[float, float, float]]:
    """{"bbox" / "segm": (ratio, low, high)}: `other`'s AP as a share of `reference`'s on the evaluated images, and
    the `confidence` interval of that share over a paired bootstrap: the images resampled with replacement
    `resamples` times, the same sample for both. It says how far another set of images of the same kind could move
    the share, which a drop of a fraction of a percent (an int8 file against its float one) needs beside it."""
    from tqdm import tqdm

    pairs = {kind: (reference.evaluators.get(kind), other.evaluators.get(kind)) for kind in ("bbox", "segm")}
    pairs = {kind: pair for kind, pair in pairs.items() if None not in pair}  # a file without detections: no share
    for ref, oth in pairs.values():
        if list(ref.params.imgIds) != list(oth.params.imgIds):
            raise EvaluationError("the two evaluations cover different images; a paired interval needs the same")
    if not pairs:
        return {}
    count = len(next(iter(pairs.values()))[0].params.imgIds)
    rng = np.random.default_rng(seed)
    samples = [rng.integers(0, count, count) for _ in range(resamples)]
    ratios: dict[str, list[float]] = {kind: [] for kind in pairs}
    for sample in tqdm(samples, desc="AP interval", unit="resample", disable=not progress):
        for kind, (ref, oth) in pairs.items():
            ratios[kind].append(_share(resampled_ap(oth, sample), resampled_ap(ref, sample)))
    tail = 100 * (1 - confidence) / 2
    out = {}
    for kind in pairs:
        finite = np.array(ratios[kind])[np.isfinite(ratios[kind])]
        low, high = np.percentile(finite, [tail, 100 - tail]) if len(finite) else (np.nan, np.nan)
        share = _share(other.metrics[kind]["AP"], reference.metrics[kind]["AP"])  # COCOeval's, on the whole set
        out[kind] = (share, float(low), float(high))
    return out


def _share(value: float, reference: float) -> float:
    return value / reference if reference > 0 else float("nan")


@dataclass
class CompareRow:
    model: str
    backend: str
    size_mb: float
    box_ap: float
    mask_ap: float
    inference_ms: float
    intervals: dict = field(default_factory=dict)  # {"bbox" / "segm": (share of the first's AP, low, high)}


def compare(models: list[str], images_dir, annotation_file, *, limit: int | None = None, backend: str = "auto",
            num_threads: int | None = None, progress: bool = True, resamples: int = 0) -> list[CompareRow]:
    """Evaluate several files of one model under the same protocol: the int8 accuracy report. With `resamples`,
    each later file's row also gets its AP as a share of the first file's with a 95% interval (`ap_ratio_intervals`)."""
    import statistics

    from .assets import resolve_model_path
    from .runtime import Detector

    if len(models) < 1:
        raise EvaluationError("give at least one --model")
    if resamples and (len(models) < 2 or resamples < MIN_RESAMPLES):
        raise EvaluationError(f"an AP interval compares each file with the first: it needs at least two models and "
                              f"{MIN_RESAMPLES} resamples, got {len(models)} and {resamples}")
    # Every file is opened before any is evaluated, so a bad later file fails at once, not after minutes of work.
    detectors = [Detector(model, backend=backend, num_threads=num_threads, **PROTOCOL) for model in models]
    rows, first = [], None
    for model, detector in zip(models, detectors):
        result = evaluate(detector, images_dir, annotation_file, limit=limit, progress=progress)
        first = result if first is None else first
        rows.append(CompareRow(
            model=str(model), backend=detector.backend.name, size_mb=resolve_model_path(model).stat().st_size / 1e6,
            box_ap=result.metrics["bbox"]["AP"], mask_ap=result.metrics["segm"]["AP"],
            inference_ms=statistics.median(result.inference_ms),
            intervals=ap_ratio_intervals(first, result, resamples=resamples, progress=progress)
            if resamples and rows else {},
        ))
    return rows


def format_compare(rows: list[CompareRow], resamples: int = 0) -> str:
    base = rows[0]
    lines = [f"{'model':<40}{'backend':<12}{'MB':>7}{'box AP':>9}{'Δ':>8}{'mask AP':>9}{'Δ':>8}{'infer ms':>10}"]
    for r in rows:
        lines.append(
            f"{Path(r.model).name[:39]:<40}{r.backend:<12}{r.size_mb:>7.1f}{r.box_ap:>9.4f}{r.box_ap - base.box_ap:>+8.4f}"
            f"{r.mask_ap:>9.4f}{r.mask_ap - base.mask_ap:>+8.4f}{r.inference_ms:>10.1f}"
        )
    if resamples:
        lines.append(f"AP as a share of {Path(base.model).name}'s, with its 95% interval over {resamples} paired "
                     "bootstrap resamples of the images:")
        for r in rows[1:]:
            cells = [f"{label} {_interval_text(r.intervals.get(kind))}" for kind, label in (("bbox", "box"),
                                                                                             ("segm", "mask"))]
            lines.append(f"{Path(r.model).name[:39]:<40}" + "   ".join(cells))
    return "\n".join(lines)


def _interval_text(interval: tuple[float, float, float] | None) -> str:
    """"98.997% (98.43% to 99.47%)", or "n/a" where there was no share to take (no detections, a first file at 0 AP)."""
    if interval is None or not np.all(np.isfinite(interval)):
        return "n/a"
    share, low, high = (100 * v for v in interval)
    return f"{share:.3f}% ({low:.2f}% to {high:.2f}%)"
