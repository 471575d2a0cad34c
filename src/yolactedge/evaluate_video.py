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
from collections.abc import Sequence

import numpy as np

from .postprocessing.rle import decode

TRACKING_FIELDS = {"HOTA": "HOTA", "DetA": "DetA", "AssA": "AssA", "IDF1": "IDF1", "MOTA": "MOTA",
                   "IDSW": "IDSW", "IDTP": "IDTP", "IDFN": "IDFN", "IDFP": "IDFP"}


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
    out = {}
    for name, field in TRACKING_FIELDS.items():
        value = metrics[field]
        out[name] = float(np.mean(value)) if np.ndim(value) else float(value)  # HOTA fields are per alpha
    return out


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
