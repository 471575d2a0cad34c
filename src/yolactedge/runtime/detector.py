"""One `Detector` over three runtimes: PyTorch (.pth), ONNX Runtime (.onnx) and LiteRT (.tflite).

    image (path or RGB uint8) → resize to the model input (bilinear, no aspect kept) → cast/quantize
        → backend.invoke → raw outputs (boxes, scores, masks, proto; float32) → postprocess → Detections
"""
from __future__ import annotations

import inspect
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ..keyframes import is_key_frame
from ..postprocessing import Detections, postprocess
from ..postprocessing.pipeline import check_thresholds
from .backend import open_backend
from .images import as_rgb_uint8, load_image
from .tensors import ModelError, RawOutputs

if TYPE_CHECKING:
    from ..track import Tracker
    from .stream import StreamStats

# Keyword options of `postprocess` that a Detector passes through (score_threshold, nms, ...), with their defaults.
_POSTPROCESS_DEFAULTS = {
    name: p.default for name, p in inspect.signature(postprocess).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
}
POSTPROCESS_OPTIONS = tuple(_POSTPROCESS_DEFAULTS)
# The score threshold of `Detector` and `yolactedge predict`: detections a person would want drawn. Evaluation
# uses the original's protocol instead (0.05 and more; see `yolactedge.evaluate.PROTOCOL`).
DEFAULT_SCORE_THRESHOLD = 0.3
MISSING_NAMES_WARNING = ("{path}: the model carries no class names (no embedded metadata, no {sidecar}.json beside "
                         "it); using default names: pass class_names=[...] / --names FILE")


# --- the detector ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Prediction:
    """One image's result: the Detections (in original-image pixels), stage timings in milliseconds
    (`preprocess`: resize + cast/quantize, `inference`: the runtime call, `postprocess`: NMS + masks; decoding an
    image file is not counted), the original (H, W), the class names, the path or frame name when one was given,
    and with tracking the track id of each detection (int64 (K,), -1 for one that belongs to no track yet).
    `frame` is "key" or "warped" in video mode (a Detector with keyframe_interval > 1), None for an image model."""

    detections: Detections
    timings: dict[str, float]
    image_size: tuple[int, int]
    class_names: tuple[str, ...] = field(repr=False)
    source: str | None = None
    track_ids: np.ndarray | None = None
    frame: str | None = None

    def __len__(self) -> int:
        return len(self.detections)

    def summary(self) -> str:
        """One line such as "2 circle, 1 star (pre 0.4 ms, infer 12.0 ms, post 1.1 ms)"; with tracking, the track ids
        follow the classes ("2 circle, 1 star; tracks 1 4 7")."""
        t = self.timings
        kind = f"{self.frame} frame, " if self.frame else ""
        tracks = ""
        if self.track_ids is not None and (self.track_ids >= 0).any():
            tracks = "; tracks " + " ".join(str(i) for i in sorted(self.track_ids[self.track_ids >= 0].tolist()))
        return (f"{self.detections.summary(self.class_names)}{tracks} ({kind}pre {t['preprocess']:.1f} ms, "
                f"infer {t['inference']:.1f} ms, post {t['postprocess']:.1f} ms)")


class Detector:
    """Instance segmentation with any YOLACT-Edge model file.

    >>> detector = Detector("model_int8.tflite", num_threads=2, score_threshold=0.3)
    >>> prediction = detector("photo.jpg")            # or an RGB uint8 array
    >>> prediction.detections.boxes, prediction.timings["inference"]

    model: a .pth checkpoint, .onnx or .tflite file, "demo", or a YolactEdge module (torch backend).
    backend: "auto" (by suffix), "torch", "onnxruntime" or "litert".
    num_threads: CPU threads of the runtime (None: its default; for torch this sets torch's global count).
    delegate: litert only: path of an external delegate library, e.g. /usr/lib/libvx_delegate.so on i.MX 8M Plus.
    class_names: override the names the model carries (torch: its config; onnx: metadata; tflite: the sidecar
        `<model>.json`, else its embedded metadata; else COCO's for 80 classes, "class0".. otherwise, with a
        warning).
    postprocess_options: keyword options of `yolactedge.postprocess` (score_threshold, iou_threshold, nms, top_k,
        max_detections, mask_threshold). score_threshold defaults to 0.3 as `yolactedge predict --conf` does.
    keyframe_interval: 1 (default) treats every image on its own. k > 1 needs a video model (a torch video model,
        or an ONNX key-frame graph with its `<stem>_warp.onnx` partner) and runs YOLACT-Edge's video mode: the
        calls are the frames of one video, in order; frames 0, k, 2k, ... are key frames (the whole network) and
        the frames between are warped from the latest key frame (backbone to C3, flow net, warp). The Detector
        keeps that state: call `reset()` before the first frame of another video (`stream` and `stream_frames`
        reset at their start). Each Prediction's `frame` says "key" or "warped".
    """

    def __init__(self, model: Any, backend: str = "auto", *, num_threads: int | None = None,
                 delegate: str | os.PathLike | None = None, class_names: Sequence[str] | None = None,
                 keyframe_interval: int = 1, **postprocess_options: Any) -> None:
        unknown = sorted(set(postprocess_options) - set(POSTPROCESS_OPTIONS))
        if unknown:
            raise ModelError(f"unknown option {unknown[0]!r}; "
                             f"postprocess options are {', '.join(POSTPROCESS_OPTIONS)}")
        if isinstance(keyframe_interval, bool) or not isinstance(keyframe_interval, int) or keyframe_interval < 1:
            raise ModelError(f"keyframe_interval must be a positive integer (1: image mode), got {keyframe_interval!r}")
        if isinstance(class_names, str):
            raise ModelError(f"class_names must be a list of names, not the string {class_names!r}")
        self.backend = open_backend(model, backend, num_threads=num_threads, delegate=delegate)
        if class_names is None and not self.backend.class_names_found:
            warnings.warn(MISSING_NAMES_WARNING.format(path=self.backend.path, sidecar=Path(self.backend.path).stem),
                          stacklevel=2)
        if class_names is not None:
            class_names = tuple(str(n) for n in class_names)
            if len(class_names) != self.backend.num_classes:
                raise ModelError(f"{len(class_names)} class names given for a model with "
                                 f"{self.backend.num_classes} classes")
        self.class_names: tuple[str, ...] = class_names or self.backend.class_names
        self.keyframe_interval = keyframe_interval
        if keyframe_interval > 1:
            self.backend.open_video()
        self.reset()
        self.postprocess_options = {"score_threshold": DEFAULT_SCORE_THRESHOLD, **postprocess_options}
        chosen = {**_POSTPROCESS_DEFAULTS, **self.postprocess_options}
        try:
            check_thresholds(chosen["score_threshold"], chosen["iou_threshold"], chosen["top_k"],
                             chosen["max_detections"], chosen["mask_threshold"])
        except ValueError as exc:
            raise ModelError(str(exc)) from None

    def reset(self) -> None:
        """Forget the video seen so far: the next frame is a key frame (call before the first frame of a video)."""
        self._frame_index = 0
        self._memory: Any = None

    def _invoke(self, tensor: np.ndarray) -> tuple[RawOutputs, str | None]:
        """The backend on the next frame → (raw outputs, "key" / "warped" / None in image mode), advancing the
        video state on the original's schedule (`is_key_frame`, phase 0)."""
        if self.keyframe_interval == 1:
            return self.backend.invoke(tensor), None
        if self._memory is None or is_key_frame(self._frame_index, self.keyframe_interval):
            raw, self._memory = self.backend.invoke_key(tensor)
            kind = "key"
        else:
            raw, kind = self.backend.invoke_warped(tensor, self._memory), "warped"
        self._frame_index += 1
        return raw, kind

    @property
    def input_size(self) -> tuple[int, int]:
        """The model's input (H, W)."""
        return self.backend.input_size

    def __repr__(self) -> str:
        h, w = self.input_size
        return (f"Detector({self.backend.path!r}, backend={self.backend.name!r}, input {h}x{w}, "
                f"{len(self.class_names)} classes)")

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 [H, W, 3] at any size → the model's input tensor (bilinear resize, then cast/quantize)."""
        h, w = self.input_size
        if image.shape[:2] != (h, w):
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        return self.backend.prepare(image)

    def __call__(self, image: np.ndarray | str | os.PathLike) -> Prediction:
        """Detect in one image: an RGB uint8 array ([H, W] gray and [H, W, 4] RGBA are converted) or a file path.

        In video mode (keyframe_interval > 1) the image is the next frame of the current video."""
        source, image = _read(image)
        raw, kind, timings = self._run_model(image)
        t0 = time.perf_counter()
        detections = postprocess(*raw, image.shape[:2], **self.postprocess_options)
        timings["postprocess"] = (time.perf_counter() - t0) * 1e3
        return Prediction(detections, timings, image.shape[:2], self.class_names, source, frame=kind)

    def _run_model(self, image: np.ndarray) -> tuple[RawOutputs, str | None, dict[str, float]]:
        """RGB uint8 image → (raw outputs, "key" / "warped" / None, {"preprocess", "inference"} ms)."""
        t0 = time.perf_counter()
        tensor = self.preprocess(image)
        t1 = time.perf_counter()
        raw, kind = self._invoke(tensor)
        t2 = time.perf_counter()
        return raw, kind, {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3}

    def stream(self, frames: Iterable[Any], *, track: bool = False, latest: bool = False,
               tracker: Tracker | None = None, stats: StreamStats | None = None) -> Iterator[Prediction]:
        """Predictions for a sequence of frames, in order, decoding, inference and post-processing overlapped.

        frames: RGB uint8 arrays, or (name, array) pairs (the name becomes `Prediction.source`); the iterable is
        read in a thread of its own, so a video decoder runs beside the model. track: give each detection a track
        id that persists across frames (`yolactedge.track.Tracker` starting tracks at the score threshold, or the
        one passed as `tracker`); weak detections that continue a track are kept even below the score threshold,
        as ByteTrack does.
        latest: for live sources, skip frames that arrive while the model is busy.
        In video mode the stream is one video: it starts with `reset()`, so its first frame is a key frame.
        """
        for _, prediction in self.stream_frames(frames, track=track, latest=latest, tracker=tracker, stats=stats):
            yield prediction

    def stream_frames(self, frames: Iterable[Any], *, track: bool = False, latest: bool = False,
                      tracker: Tracker | None = None,
                      stats: StreamStats | None = None) -> Iterator[tuple[np.ndarray, Prediction]]:
        """As `stream`, yielding (frame, prediction) pairs, for callers that draw on the frame."""
        from ..track import Tracker
        from .stream import pipelined

        if tracker is not None and not track:
            raise ValueError("a tracker was given with track=False; pass track=True to use it")
        options = dict(self.postprocess_options)
        wanted = options["score_threshold"]
        if track and tracker is None:
            tracker = Tracker.at_threshold(wanted)
        if tracker is not None:
            options["score_threshold"] = min(wanted, tracker.config.low_score)
        self.reset()

        def infer(item):
            source, image = item if isinstance(item, tuple) else (None, item)
            image = as_rgb_uint8(image)
            return (source, image, *self._run_model(image))  # one inference thread: frames reach it in order

        def finish(item):
            source, image, raw, kind, timings = item
            t0 = time.perf_counter()
            detections = postprocess(*raw, image.shape[:2], **options)
            track_ids = None
            if tracker is not None:
                detections, track_ids = tracker.track(detections, wanted)
            timings["postprocess"] = (time.perf_counter() - t0) * 1e3
            return image, Prediction(detections, timings, image.shape[:2], self.class_names, source, track_ids,
                                     kind)

        yield from pipelined(frames, [("inference", infer), ("postprocess", finish)], latest=latest, stats=stats)

    def predict_batch(self, images: Iterable[np.ndarray | str | os.PathLike]) -> list[Prediction]:
        """One Prediction per image, in order (the models take batch 1, so images run one after another)."""
        return [self(image) for image in images]

    def raw(self, image: np.ndarray | str | os.PathLike) -> RawOutputs:
        """The network's raw float32 outputs for one image (no postprocessing); in video mode, the next frame's."""
        return self._invoke(self.preprocess(_read(image)[1]))[0]

    def describe(self) -> str:
        """A few lines: file, backend, input, outputs (with the names they were found under), classes."""
        b = self.backend
        names = ", ".join(self.class_names[:8]) + (", ..." if len(self.class_names) > 8 else "")
        lines = [f"model       {b.path}", f"backend     {b.name}", f"input       {b.input_spec.describe()}"]
        for role, (name, shape, dtype) in b.output_info.items():
            found = "" if name == role else f" (output {name!r})"
            lines.append(f"output      {role:<7} {dtype} {list(shape)}{found}")
        lines.append(f"classes     {len(self.class_names)} ({names})")
        if self.keyframe_interval > 1:
            lines.append(f"video       a key frame every {self.keyframe_interval} frames, the others warped from it")
        return "\n".join(lines)


def _read(image: np.ndarray | str | os.PathLike) -> tuple[str | None, np.ndarray]:
    """A path (decoded) or an array (checked) → (the path or None, RGB uint8 [H, W, 3])."""
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image), load_image(image)
    return None, as_rgb_uint8(image)
