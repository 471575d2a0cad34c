"""Tracking quality on held-out synthetic videos: our tracker against supervision's ByteTrack, same detections.

Both trackers get the same per-frame detections of one model (the COCO protocol's, score >= 0.05); each keeps
what it tracks at the same score threshold. Tracks are scored with yolactedge.evaluate_video (TrackEval's HOTA,
IDF1, CLEAR; YouTube-VIS video AP through pycocotools), so the comparison is the association alone.

    python benchmarks/bench_tracking.py                       # 20 videos x 30 frames, the demo model
    python benchmarks/bench_tracking.py --videos 4 --frames 10  # a quick look

supervision is the reference implementation, measured here only: `pip install supervision==0.26.1` (later
releases moved ByteTrack out of the package).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from results_file import write_results  # noqa: E402

from yolactedge.data import generate_videos, load_ytvis
from yolactedge.evaluate import PROTOCOL
from yolactedge.evaluate_video import tracking_metrics, video_ap, video_ground_truth
from yolactedge.runtime import Detector
from yolactedge.runtime.images import load_image
from yolactedge.track import UNTRACKED, Tracker
from yolactedge.track.results import VideoTrackResults

HELD_OUT_SEED = 20261130  # never used to train the demo model (its images use seeds 1 and 20261126)


def detect_all(detector: Detector, dataset) -> dict[int, list]:
    """Per video, every frame's Detections (protocol thresholds), computed once for all trackers."""
    return {video.id: [p.detections for p in detector.stream(load_image(p) for p in dataset.frame_paths(video))]
            for video in dataset.videos}


def ours(frames: list, threshold: float, category_ids) -> VideoTrackResults:
    tracker, collected = Tracker.at_threshold(threshold), VideoTrackResults()
    for detections in frames:
        collected.add(*tracker.track(detections, threshold))
    return collected


def supervision_bytetrack(frames: list, threshold: float, fps: float) -> VideoTrackResults:
    import supervision as sv

    tracker, collected = sv.ByteTrack(track_activation_threshold=threshold, frame_rate=int(round(fps))), \
        VideoTrackResults()
    for detections in frames:
        given = detections.subset(detections.scores >= 0.1)  # ByteTrack's own low-score floor
        tracked = tracker.update_with_detections(sv.Detections(
            xyxy=given.boxes.astype(np.float32), confidence=given.scores, class_id=given.class_ids,
            data={"index": np.arange(len(given))}))
        ids = np.full(len(given), UNTRACKED, np.int64)
        if len(tracked):  # an empty result carries no data fields
            ids[tracked.data["index"]] = tracked.tracker_id
        keep = (given.scores >= threshold) | (ids != UNTRACKED)
        collected.add(given.subset(keep), ids[keep])
    return collected


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--conf", type=float, default=0.3, help="score at which detections are tracked")
    parser.add_argument("--data", default="benchmarks/results/track_videos")
    parser.add_argument("--json-out", default="benchmarks/results/tracking.json")
    args = parser.parse_args()

    data = Path(args.data)
    if not (data / "annotations.json").is_file():
        generate_videos(data, args.videos, args.frames, seed=HELD_OUT_SEED, fps=args.fps, workers=2)
    dataset = load_ytvis(data)
    detector = Detector(args.model, num_threads=2, **PROTOCOL)
    per_video = detect_all(detector, dataset)
    gt = video_ground_truth(dataset, dataset.videos)
    names = [c["name"] for c in dataset.categories]
    category_ids = [next(c["id"] for c in dataset.categories if c["name"] == n) for n in detector.class_names
                    if n in names]
    rows = {}
    for name, run in (("yolactedge Tracker", lambda f: ours(f, args.conf, category_ids)),
                      ("supervision ByteTrack 0.26.1", lambda f: supervision_bytetrack(f, args.conf, args.fps))):
        entries = []
        for video in dataset.videos:
            entries.extend(run(per_video[video.id]).entries(video.id, category_ids))
        rows[name] = {**tracking_metrics(gt, entries), "video_AP": video_ap(gt, entries)["AP"], "tracks": len(entries)}
    print(f"{len(dataset.videos)} videos x {dataset.videos[0].length} frames (seed {HELD_OUT_SEED}), "
          f"model {args.model}, tracked at score >= {args.conf}")
    print("| tracker | HOTA | DetA | AssA | IDF1 | MOTA | ID switches | video mask AP | tracks |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['HOTA']:.3f} | {r['DetA']:.3f} | {r['AssA']:.3f} | {r['IDF1']:.3f} | "
              f"{r['MOTA']:.3f} | {int(r['IDSW'])} | {r['video_AP']:.3f} | {r['tracks']} |")
    write_results(args.json_out, {"args": vars(args), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
