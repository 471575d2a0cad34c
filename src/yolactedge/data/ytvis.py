"""YouTube-VIS video instance segmentation files: read and check, write atomically, flatten to COCO images.

A YouTube-VIS file lists `videos` (frame file names relative to the frames folder, JPEGImages/) and one
annotation per instance track with per-frame `segmentations`, `bboxes` and `areas`, null where the instance is
not visible. The file is checked record by record when loaded, so a bad file fails with one line naming the
record (the ValueError of coco.py's checker), not deep inside training or evaluation. `frames_as_coco` turns
every frame into a COCO image so the per-frame COCO evaluation (`yolactedge val`) scores a video dataset.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..fileio import atomic_write_json
from .coco import _Checker, _is_int, _is_number, _parse_categories, _read_json

ANNOTATION_FILE = "annotations.json"
FRAMES_DIR = "JPEGImages"


@dataclass(frozen=True)
class YtvisVideo:
    id: int
    file_names: list[str]  # relative to the dataset's frames folder, one per frame
    width: int
    height: int

    @property
    def length(self) -> int:
        return len(self.file_names)


@dataclass(frozen=True)
class YtvisTrack:
    """One instance through a video: per frame an RLE dict, [x, y, w, h] box and area, or None where unseen."""

    id: int
    video_id: int
    category_id: int
    segmentations: list
    bboxes: list
    areas: list
    iscrowd: int = 0


@dataclass(frozen=True)
class YtvisDataset:
    annotation_file: Path
    frames_dir: Path
    videos: list[YtvisVideo]
    tracks: list[YtvisTrack]
    categories: list[dict]  # {"id", "name", ...} sorted by id

    def frame_paths(self, video: YtvisVideo) -> list[Path]:
        return [self.frames_dir / name for name in video.file_names]

    def tracks_of(self, video: YtvisVideo) -> list[YtvisTrack]:
        return [track for track in self.tracks if track.video_id == video.id]

    def missing_frames(self) -> list[Path]:
        """Frame files the videos name that are not on disk, in video and frame order."""
        return [path for video in self.videos for path in self.frame_paths(video) if not path.is_file()]


def _parse_video(record: dict, check: _Checker) -> YtvisVideo:
    where = f"video id {record['id']}"
    names = record.get("file_names")
    check.require(isinstance(names, list) and names and all(isinstance(n, str) and n for n in names), where,
                  "'file_names' must be a non-empty list of frame file names")
    for key in ("width", "height"):
        check.require(_is_int(record.get(key)) and record[key] > 0, where, f"'{key}' must be a positive integer")
    check.require(record.get("length") == len(names), where,
                  f"'length' is {record.get('length')!r} but 'file_names' has {len(names)} frames")
    return YtvisVideo(record["id"], names, record["width"], record["height"])


def _check_frame(track: dict, t: int, video: YtvisVideo, check: _Checker, where: str) -> None:
    """Frame t of a track: all three of segmentation, bbox and area null, or an RLE of the video's size, 4 numbers
    and a number."""
    seg, box, area = track["segmentations"][t], track["bboxes"][t], track["areas"][t]
    where = f"{where}: frame {t}"
    check.require((seg is None) == (box is None) == (area is None), where,
                  "segmentation, bbox and area must be all null or all given")
    if seg is None:
        return
    check.require(isinstance(seg, dict) and seg.get("size") == [video.height, video.width] and
                  isinstance(seg.get("counts"), (str, list)), where,
                  f"segmentation must be an RLE {{size: [{video.height}, {video.width}], counts}}")
    counts = seg["counts"]
    check.require(isinstance(counts, str) or (all(_is_int(c) and c >= 0 for c in counts)
                                               and sum(counts) == video.height * video.width), where,
                  f"an uncompressed RLE's counts must be non-negative integers summing to {video.height * video.width}"
                  f" (height x width)")
    check.require(isinstance(box, list) and len(box) == 4 and all(map(_is_number, box)) and min(box[2:]) >= 0,
                  where, "bbox must be 4 numbers x, y, w, h with w, h >= 0")
    check.require(_is_number(area) and area >= 0, where, "area must be a non-negative number")


def _parse_track(record: dict, videos: dict, category_ids: set, check: _Checker) -> YtvisTrack:
    where = f"annotation id {record['id']}"
    video_id, category_id = record.get("video_id"), record.get("category_id")
    check.require(_is_int(video_id) and video_id in videos, where, f"unknown video_id {video_id!r}")
    check.require(_is_int(category_id) and category_id in category_ids, where,
                  f"unknown category_id {category_id!r}")
    check.require(record.get("iscrowd", 0) in (0, 1), where, "iscrowd must be 0 or 1")
    video = videos[video_id]
    for key in ("segmentations", "bboxes", "areas"):
        check.require(key in record, where, f"missing '{key}'")
        check.require(isinstance(record[key], list) and len(record[key]) == video.length, where,
                      f"'{key}' must list one entry per frame: video {video_id} has {video.length} frames")
    for t in range(video.length):
        _check_frame(record, t, video, check, where)
    return YtvisTrack(record["id"], video_id, category_id, record["segmentations"], record["bboxes"],
                      record["areas"], record.get("iscrowd", 0))


def load_ytvis(path, frames_dir=None) -> YtvisDataset:
    """Read and check a YouTube-VIS file: `path` is the JSON or the folder holding annotations.json.

    Frame files are looked up under `frames_dir` (default: JPEGImages/ beside the JSON) but not required to
    exist: `missing_frames()` lists those that do not.
    """
    path = Path(path)
    if path.is_dir():
        path = path / ANNOTATION_FILE
    data, check = _read_json(path), _Checker(path)
    category_ids, _ = _parse_categories(data, check)
    categories = sorted(data["categories"], key=lambda c: c["id"])
    videos = {record["id"]: _parse_video(record, check) for record in check.records(data, "videos")}
    tracks = [_parse_track(record, videos, set(category_ids), check)
              for record in check.records(data, "annotations", required=False)]
    frames = Path(frames_dir) if frames_dir is not None else path.parent / FRAMES_DIR
    return YtvisDataset(path, frames, list(videos.values()), tracks, categories)


def write_ytvis(path, data: dict) -> Path:
    """Write a YouTube-VIS dict as JSON atomically (a reader or a crash never sees half a file)."""
    return atomic_write_json(path, data)


def frames_as_coco(dataset: YtvisDataset) -> dict:
    """A COCO image dataset with one image per frame (file_name as in the video's file_names, so relative to
    frames_dir) and one annotation per visible instance per frame, carrying its `track_id`."""
    images, annotations = [], []
    tracks_by_video = {video.id: dataset.tracks_of(video) for video in dataset.videos}
    for video in dataset.videos:
        for t, file_name in enumerate(video.file_names):
            image_id = len(images) + 1
            images.append({"id": image_id, "file_name": file_name, "width": video.width, "height": video.height,
                           "video_id": video.id, "frame_index": t})
            for track in tracks_by_video[video.id]:
                if track.segmentations[t] is None:
                    continue
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": track.category_id,
                    "segmentation": track.segmentations[t], "bbox": track.bboxes[t], "area": track.areas[t],
                    "iscrowd": track.iscrowd, "track_id": track.id,
                })
    return {"images": images, "annotations": annotations, "categories": dataset.categories}
