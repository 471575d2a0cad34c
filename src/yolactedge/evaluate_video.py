"""Video metrics on YouTube-VIS data: video mask AP (spatio-temporal IoU of tracks) and tracking quality.

Inputs are the YouTube-VIS formats: ground truth {"videos", "annotations" (one per track, `segmentations[t]` a
COCO RLE or None), "categories"}; results [{"video_id", "category_id", "score", "segmentations"}].

- Video AP: pycocotools' COCOeval with each video as an "image" and each track as an "annotation", its IoU
  replaced by the spatio-temporal IoU of YouTube-VIS: Σ_t |d_t ∩ g_t| / Σ_t |d_t ∪ g_t|.
- Tracking: HOTA (DetA, AssA), IDF1 and CLEAR (MOTA, ID switches) from TrackEval's metric classes, fed with mask
  IoU per frame, class-agnostic, as TrackEval's MOT-style evaluation does.
"""
from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .postprocessing.rle import decode

TRACKING_FIELDS = ("HOTA", "DetA", "AssA", "IDF1", "MOTA", "IDSW", "IDTP", "IDFN", "IDFP")


def _stack(segmentations: Sequence[dict | None], frame: int, size: tuple[int, int]) -> np.ndarray:
    """Flattened float32 masks of the tracks in one frame (zeros where a track is absent): (tracks, H*W)."""
    out = np.zeros((len(segmentations), size[0] * size[1]), np.float32)
    for i, track in enumerate(segmentations):
        if track[frame] is not None:
            out[i] = decode(track[frame]).ravel()
    return out


def spatio_temporal_iou(dt: Sequence[Sequence[dict | None]], gt: Sequence[Sequence[dict | None]],
                        size: tuple[int, int]) -> np.ndarray:
    """(len(dt), len(gt)) Σ_t intersection / Σ_t union of per-frame masks; tracks are lists of RLE or None."""
    if not dt or not gt:
        return np.zeros((len(dt), len(gt)))
    inter = np.zeros((len(dt), len(gt)))
    area_d, area_g = np.zeros(len(dt)), np.zeros(len(gt))
    for t in range(len(gt[0])):
        d, g = _stack(dt, t, size), _stack(gt, t, size)
        inter += d @ g.T
        area_d += d.sum(1)
        area_g += g.sum(1)
    union = area_d[:, None] + area_g[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def video_ap(gt: dict, results: list[dict]) -> dict[str, float]:
    """YouTube-VIS video mask AP: the 12 COCO summary numbers (AP, AP50, AP75, APs/m/l, AR1/10/100, ARs/m/l)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    sizes = {v["id"]: (v["height"], v["width"]) for v in gt["videos"]}

    def as_coco(tracks: list[dict], with_scores: bool) -> COCO:
        annotations = []
        for i, track in enumerate(tracks, 1):
            areas = [decode(s).sum() for s in track["segmentations"] if s is not None]
            annotations.append({"id": i, "image_id": track["video_id"], "category_id": track["category_id"],
                                "segmentations": track["segmentations"], "iscrowd": track.get("iscrowd", 0),
                                "area": float(np.mean(areas)) if areas else 0.0,
                                **({"score": track["score"]} if with_scores else {})})
        coco = COCO()
        coco.dataset = {"images": [{"id": v} for v in sizes], "annotations": annotations,
                        "categories": gt["categories"]}
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco

    class VideoEval(COCOeval):
        def computeIoU(self, video_id, category_id):  # noqa: N802 (pycocotools' name)
            p = self.params
            gts = self._gts[video_id, category_id] if p.useCats else [
                g for c in p.catIds for g in self._gts[video_id, c]]
            dts = self._dts[video_id, category_id] if p.useCats else [
                d for c in p.catIds for d in self._dts[video_id, c]]
            dts = sorted(dts, key=lambda d: -d["score"])[:p.maxDets[-1]]
            if not gts or not dts:
                return []
            return spatio_temporal_iou([d["segmentations"] for d in dts], [g["segmentations"] for g in gts],
                                       sizes[video_id])

    # "bbox" only keeps COCOeval from converting `segmentation` fields we do not have; the IoU is computeIoU's.
    evaluator = VideoEval(as_coco(gt["annotations"], False), as_coco(results, True), "bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    names = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
    return dict(zip(names, (float(s) for s in evaluator.stats)))


def tracking_metrics(gt: dict, results: list[dict]) -> dict[str, float]:
    """HOTA, DetA, AssA, IDF1, MOTA, IDSW (and IDF1's counts) over all videos, class-agnostic, mask IoU.

    Results are the tracked output (one entry per track), not thresholded further here.
    """
    from trackeval.metrics import CLEAR, HOTA, Identity

    metrics = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for metric in (HOTA(), Identity(), CLEAR()):
            per_video = {}
            for video in gt["videos"]:
                per_video[video["id"]] = metric.eval_sequence(_trackeval_sequence(gt, results, video))
            metrics.update(metric.combine_sequences(per_video))
    # HOTA's fields are arrays over the localisation thresholds alpha; its reported value is their mean.
    return {name: float(np.mean(metrics[name])) for name in TRACKING_FIELDS}


def _trackeval_sequence(gt: dict, results: list[dict], video: dict) -> dict:
    """TrackEval's per-sequence dict: per frame the ids present (0-based) and their mask IoU matrix."""
    size = (video["height"], video["width"])
    gt_tracks = [a["segmentations"] for a in gt["annotations"] if a["video_id"] == video["id"]]
    dt_tracks = [r["segmentations"] for r in results if r["video_id"] == video["id"]]
    data = {"num_timesteps": video["length"], "num_gt_ids": len(gt_tracks), "num_tracker_ids": len(dt_tracks),
            "gt_ids": [], "tracker_ids": [], "similarity_scores": [], "num_gt_dets": 0, "num_tracker_dets": 0}
    for t in range(video["length"]):
        g_ids = np.array([i for i, s in enumerate(gt_tracks) if s[t] is not None], np.int64)
        d_ids = np.array([i for i, s in enumerate(dt_tracks) if s[t] is not None], np.int64)
        g, d = _stack([gt_tracks[i] for i in g_ids], t, size), _stack([dt_tracks[i] for i in d_ids], t, size)
        inter = g @ d.T
        union = g.sum(1)[:, None] + d.sum(1)[None, :] - inter
        data["similarity_scores"].append(np.divide(inter, union, out=np.zeros_like(inter), where=union > 0))
        data["gt_ids"].append(g_ids)
        data["tracker_ids"].append(d_ids)
        data["num_gt_dets"] += len(g_ids)
        data["num_tracker_dets"] += len(d_ids)
    return data


@dataclass
class VideoEvalResult:
    """Per-frame COCO metrics (`frames`, as `yolactedge val` on the frames as images), and with tracking the
    video AP, the tracking metrics and the YouTube-VIS results they were computed from."""

    frames: object  # evaluate.EvalResult
    videos_evaluated: int
    video: dict[str, float] | None = None
    tracking: dict[str, float] | None = None
    track_results: list[dict] = field(default_factory=list, repr=False)
    skipped: list[str] = field(default_factory=list)


def evaluate_videos(detector, data: str | os.PathLike, *, track: bool = False, track_threshold: float = 0.3,
                    limit: int | None = None, progress: bool = True, categories_by_position: bool = False,
                    warped_of: int | None = None) -> VideoEvalResult:
    """Evaluate a Detector (configured with the COCO protocol) on a YouTube-VIS dataset folder or file.

    Every frame is scored as an image; with `track`, the detections scoring at least `track_threshold` (and the
    weaker ones that continue a track) are tracked per video and scored as tracks. A video with frames missing on
    disk is skipped whole (tracks need every frame) and listed in `skipped`.

    warped_of=K scores only the frames a video model warps at key-frame interval K (every frame still runs), for
    any detector: an image model scored so is the per-frame reference on exactly the frames a video model warps.
    """
    from tqdm import tqdm

    from .data.ytvis import frames_as_coco, load_ytvis
    from .evaluate import EvaluationError, category_mapping, ground_truth, score_results
    from .keyframes import is_key_frame
    from .runtime.images import load_image
    from .track import Tracker
    from .track.results import VideoTrackResults

    if limit is not None and limit < 1:
        raise EvaluationError(f"--limit must be at least 1, got {limit}")
    if warped_of is not None and warped_of < 2:
        raise EvaluationError(f"--warped-of must be a key-frame interval of at least 2, got {warped_of}")
    if warped_of is not None and detector.keyframe_interval not in (1, warped_of):
        raise EvaluationError(f"--warped-of {warped_of} scores other frames than the model warps at "
                              f"--keyframe-interval {detector.keyframe_interval}; give both the same interval")
    dataset = load_ytvis(data)
    coco = frames_as_coco(dataset)
    gt = ground_truth(coco)
    cat_ids = category_mapping(detector.class_names, gt, by_position=categories_by_position)
    frame_ids = {(image["video_id"], image["frame_index"]): image["id"] for image in coco["images"]}
    missing = {str(path) for path in dataset.missing_frames()}
    results, entries, evaluated, inference_ms, skipped, done = [], [], [], [], [], []
    videos = dataset.videos[:limit] if limit is not None else dataset.videos
    bar = tqdm(total=sum(v.length for v in videos), desc="evaluating", unit="frame", disable=not progress)
    for video in videos:
        paths = dataset.frame_paths(video)
        absent = [str(p) for p in paths if str(p) in missing]
        if absent:
            skipped.append(f"video {video.id}: {len(absent)} frame(s) missing (first: {absent[0]})")
            bar.update(video.length)
            continue
        tracker = Tracker.at_threshold(track_threshold) if track else None
        collected = VideoTrackResults()
        for t, prediction in enumerate(detector.stream((str(p), load_image(p)) for p in paths)):
            if warped_of is None or not is_key_frame(t, warped_of):
                image_id = frame_ids[(video.id, t)]
                results.extend(prediction.detections.to_coco_json(image_id, category_ids=cat_ids))
                evaluated.append(image_id)
                inference_ms.append(prediction.timings["inference"])
            if tracker is not None:
                collected.add(*tracker.track(prediction.detections, track_threshold))
            bar.update()
        done.append(video)
        entries.extend(collected.entries(video.id, cat_ids) if tracker is not None else [])
    bar.close()
    if not done:
        raise EvaluationError(f"none of the {len(videos)} videos could be read under {dataset.frames_dir}")
    frames = score_results(gt, results, evaluated, cat_ids, detector.class_names, [], inference_ms)
    result = VideoEvalResult(frames, len(done), skipped=skipped)
    if track:
        video_gt = video_ground_truth(dataset, done)
        result.video, result.tracking = video_ap(video_gt, entries), tracking_metrics(video_gt, entries)
        result.track_results = entries
    return result


def video_ground_truth(dataset, videos) -> dict:
    """The YouTube-VIS ground truth of `videos` (records of `dataset`), as the video metrics take it."""
    ids = {video.id for video in videos}
    return {
        "videos": [{"id": v.id, "width": v.width, "height": v.height, "length": v.length} for v in videos],
        "annotations": [{"video_id": tr.video_id, "category_id": tr.category_id, "iscrowd": tr.iscrowd,
                         "segmentations": tr.segmentations} for tr in dataset.tracks if tr.video_id in ids],
        "categories": dataset.categories,
    }


def format_video_metrics(result: VideoEvalResult) -> str:
    """The tracking lines printed under the per-frame table."""
    lines = []
    if result.video is not None:
        v = result.video
        lines.append(f"video mask AP {v['AP']:.3f}  AP50 {v['AP50']:.3f}  AP75 {v['AP75']:.3f}")
    if result.tracking is not None:
        m = result.tracking
        lines.append(f"tracking  HOTA {m['HOTA']:.3f}  DetA {m['DetA']:.3f}  AssA {m['AssA']:.3f}  "
                     f"IDF1 {m['IDF1']:.3f}  MOTA {m['MOTA']:.3f}  ID switches {int(m['IDSW'])}")
    return "\n".join(lines)
