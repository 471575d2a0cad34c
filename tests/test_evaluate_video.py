"""Video metrics on crafted tracks with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from yolactedge.postprocessing.rle import encode

pytest.importorskip("pycocotools")
pytest.importorskip("trackeval")
from yolactedge.evaluate_video import spatio_temporal_iou, tracking_metrics, video_ap  # noqa: E402

H, W, T = 40, 60, 6


def square(x: int, y: int, side: int = 10) -> dict:
    mask = np.zeros((H, W), bool)
    mask[y:y + side, x:x + side] = True
    return encode(mask)


def dataset(tracks: list[list[dict | None]], category=1) -> dict:
    return {"videos": [{"id": 1, "width": W, "height": H, "length": T, "file_names": [f"{t}.jpg" for t in range(T)]}],
            "annotations": [{"id": i + 1, "video_id": 1, "category_id": category, "segmentations": s, "iscrowd": 0}
                            for i, s in enumerate(tracks)],
            "categories": [{"id": 1, "name": "square"}, {"id": 2, "name": "circle"}]}


A = [square(2 + 3 * t, 5) for t in range(T)]
B = [square(40 - 3 * t, 25) for t in range(T)]


def results(tracks, scores=None, category=1):
    return [{"video_id": 1, "category_id": category, "score": (scores or [0.9] * len(tracks))[i],
             "segmentations": s} for i, s in enumerate(tracks)]


def test_spatio_temporal_iou_sums_over_frames():
    half = [A[t] if t < 3 else None for t in range(T)]
    iou = spatio_temporal_iou([half, A], [A], (H, W))
    assert iou[:, 0].tolist() == [pytest.approx(0.5), 1.0]  # present in 3 of 6 frames: half the union


def test_perfect_tracks_score_one():
    gt = dataset([A, B])
    assert video_ap(gt, results([A, B]))["AP"] == pytest.approx(1.0)
    metrics = tracking_metrics(gt, results([A, B]))
    assert metrics["HOTA"] == pytest.approx(1.0) and metrics["IDF1"] == pytest.approx(1.0)
    assert metrics["IDSW"] == 0 and metrics["MOTA"] == pytest.approx(1.0)


def test_swapped_identities_halfway():
    """Tracker follows A then B in one track, B then A in the other: every detection right, identities not."""
    first = [A[t] if t < 3 else B[t] for t in range(T)]
    second = [B[t] if t < 3 else A[t] for t in range(T)]
    gt = dataset([A, B])
    metrics = tracking_metrics(gt, results([first, second]))
    assert metrics["IDSW"] == 2 and metrics["IDF1"] == pytest.approx(0.5)
    assert metrics["DetA"] == pytest.approx(1.0) and metrics["AssA"] < 0.6
    assert video_ap(gt, results([first, second]))["AP50"] == pytest.approx(0.0)  # IoU 1/3 per track pair


def test_a_wrong_class_and_a_missed_track():
    gt = dataset([A, B])
    assert video_ap(gt, results([A, B], category=2))["AP"] == pytest.approx(0.0)
    only_a = tracking_metrics(gt, results([A]))
    assert only_a["IDF1"] == pytest.approx(2 / 3) and only_a["IDFN"] == T
