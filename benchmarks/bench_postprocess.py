"""Time post-processing and drawing of YOLACT-Edge outputs on a 1920×1080 image; prints a table in ms.

The raw outputs are synthetic but shaped like the real thing at 550×550: 19248 anchors, 80 classes, a
138×138×32 prototype map, and about 3,000 anchors above 0.05 gathered around ~60 objects. The "naive" row is the
original's mask path for comparison: every mask resized to the full frame, then thresholded.

    python benchmarks/bench_postprocess.py --runs 20
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import cv2
import numpy as np

from yolactedge.postprocessing import Detections, postprocess
from yolactedge.postprocessing.masks import mask_crops, proto_crop
from yolactedge.postprocessing import nms
from yolactedge.visualize import draw_detections

IMAGE_SIZE = (1080, 1920)


def make_raw_outputs(seed: int, num_anchors: int = 19248, num_classes: int = 80, proto_size: int = 138,
                     num_protos: int = 32, num_objects: int = 60, anchors_per_object: int = 50) -> dict:
    """Seeded raw outputs: boxes (N, 4), scores (C, N), masks (N, P), proto (Hp, Wp, P), all float32."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, (num_anchors, 2))
    sizes = rng.uniform(0.02, 0.3, (num_anchors, 2))
    scores = rng.random((num_classes, num_anchors)) ** 4 * 0.045  # background anchors: all below 0.05
    coeffs = rng.normal(0, 1, (num_anchors, num_protos))
    members = rng.permutation(num_anchors)[: num_objects * anchors_per_object].reshape(num_objects, -1)
    for anchors in members:
        centre = rng.uniform(0.05, 0.95, 2)
        size = np.exp(rng.uniform(np.log(0.04), np.log(0.5), 2))
        centres[anchors] = centre + rng.normal(0, 0.08, (len(anchors), 2)) * size
        sizes[anchors] = size * np.exp(rng.normal(0, 0.12, (len(anchors), 2)))
        classes = rng.choice(num_classes, 3, replace=False)  # the object's class and two look-alikes
        main = rng.uniform(0.3, 0.98) * rng.uniform(0.2, 1.0, len(anchors))
        scores[:, anchors] *= 0.2
        scores[classes[0], anchors] = main
        scores[classes[1:, None], anchors] = main * rng.uniform(0.05, 0.4, (2, len(anchors)))
        coeffs[anchors] = rng.normal(0, 1.5, num_protos) + rng.normal(0, 0.3, (len(anchors), num_protos))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
    fields = cv2.resize(rng.normal(0, 1, (9, 9, num_protos)).astype(np.float32), (proto_size, proto_size),
                        interpolation=cv2.INTER_CUBIC)
    return {
        "boxes": boxes.astype(np.float32),
        "scores": scores.astype(np.float32),
        "masks": np.tanh(coeffs).astype(np.float32),
        "proto": np.maximum(fields, 0).astype(np.float32),
    }


def naive_masks(raw: dict, anchors: np.ndarray) -> np.ndarray:
    """The original's mask path for the kept anchors: every cropped map resized to the full frame. → (K, H, W)."""
    height, width = IMAGE_SIZE
    proto = raw["proto"]
    maps = 1 / (1 + np.exp(-(proto @ raw["masks"][anchors].T)))  # (Hp, Wp, K)
    cells = proto_crop(raw["boxes"][anchors], *proto.shape[:2])
    out = np.zeros((len(anchors), height, width), bool)
    for k, (x1, y1, x2, y2) in enumerate(cells):
        cropped = np.zeros(proto.shape[:2], np.float32)
        cropped[y1:y2, x1:x2] = maps[y1:y2, x1:x2, k]
        out[k] = cv2.resize(cropped, (width, height), interpolation=cv2.INTER_LINEAR) > 0.5
    return out


def _time_ms(fn, runs: int) -> tuple[float, float]:
    """(median, min) wall time of `runs` calls, in ms; the min shows the cost without other load."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per stage (median and min are reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-runs", type=int, default=5,
                        help="timed forwards of the full MobileNetV2 model (ONNX Runtime fp32, 2 threads); 0 skips it")
    args = parser.parse_args()

    raw = make_raw_outputs(args.seed)
    height, width = IMAGE_SIZE
    image = cv2.resize(np.random.default_rng(args.seed).integers(0, 256, (27, 48, 3), dtype=np.uint8),
                       (width, height), interpolation=cv2.INTER_CUBIC)
    names = [f"class{i}" for i in range(raw["scores"].shape[0])]
    dets = postprocess(**raw, image_size=IMAGE_SIZE)
    crops = dict(mask_boxes=dets.mask_boxes, mask_crops=dets.mask_crops, image_size=IMAGE_SIZE)

    def select(mode):
        return nms.select(raw["boxes"], raw["scores"], 0.05, 0.5, mode, 200, 100)

    anchors = select("fast")[0]
    rows = [
        ("select: Fast NMS", lambda: select("fast")),
        ("select: standard NMS", lambda: select("standard")),
        ("select: class-agnostic NMS", lambda: select("class_agnostic")),
        ("masks: crops in footprints",
         lambda: mask_crops(raw["masks"][anchors], raw["proto"], raw["boxes"][anchors], IMAGE_SIZE, 0.5)),
        ("postprocess total (fast)", lambda: postprocess(**raw, image_size=IMAGE_SIZE)),
        ("draw_detections", lambda: draw_detections(image, dets, names)),
        ("postprocess + draw", lambda: draw_detections(image, postprocess(**raw, image_size=IMAGE_SIZE), names)),
        ("Detections.masks (K,H,W), on demand",
         lambda: Detections(dets.boxes, dets.scores, dets.class_ids, **crops).masks),
        ("naive masks (full-frame resize)", lambda: naive_masks(raw, anchors)),
    ]
    above = int((raw["scores"].max(0) > 0.05).sum())
    print(f"{width}x{height} image, {raw['boxes'].shape[0]} anchors ({above} above 0.05), {len(dets)} detections, "
          f"{args.runs} runs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'stage':<38}{'median ms':>10}{'min ms':>8}")
    print("-" * 56)
    measured = {}
    for name, fn in rows:
        median, best = _time_ms(fn, args.runs)
        measured[name] = median
        print(f"{name:<38}{median:>10.2f}{best:>8.2f}")
    if args.model_runs > 0:
        model_ms, best = _time_ms(model_inference(), args.model_runs)
        print(f"{'MobileNetV2 550 inference (ORT fp32)':<38}{model_ms:>10.2f}{best:>8.2f}")
        ratio = measured["postprocess + draw"] / model_ms
        print(f"postprocess + draw = {ratio:.3f} x model inference (goal: at most 0.1)")


def model_inference():
    """A callable running the full-size MobileNetV2 YOLACT-Edge once in ONNX Runtime (2 threads)."""
    import tempfile

    import onnxruntime as ort
    import torch

    from yolactedge import build_model

    model = build_model("yolact_edge_mobilenetv2")
    path = os.path.join(tempfile.mkdtemp(), "mbv2.onnx")
    torch.onnx.export(model, torch.zeros(1, 3, 550, 550), path, dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["boxes", "scores", "masks", "proto"])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    frame = np.random.default_rng(0).uniform(0, 255, (1, 3, 550, 550)).astype(np.float32)
    session.run(None, {"input": frame})
    return lambda: session.run(None, {"input": frame})


if __name__ == "__main__":
    main()
