"""The verbs: each checks what argparse cannot and calls one public function of the package."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import UsageError


def cmd_info(args: argparse.Namespace) -> int:
    from ..info import describe_model

    print(describe_model(args.model))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import export_model
    from ..export.verify import verify_existing

    if args.verify_only:
        if not args.reference:
            raise UsageError("--verify-only needs --reference: the float checkpoint or .onnx the file came from")
        verify_existing(args.model, args.reference)
        return 0
    result = export_model(
        args.model, args.format, precision=args.precision, calib=args.calib, calib_count=args.calib_count,
        calib_seed=args.calib_seed, imgsz=args.imgsz, output=args.output, target=args.target,
        verify=not args.no_verify, carry_protos=args.carry_protos, equalise=not args.no_equalise,
    )
    print(result.summary())
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from ..data.synthetic import generate_dataset

    if args.images < 1:
        raise UsageError(f"--images must be at least 1, got {args.images}")
    if args.workers < 0:
        raise UsageError(f"--workers must be at least 0, got {args.workers}")
    out = generate_dataset(args.out, args.images, seed=args.seed, image_size=args.imgsz, workers=args.workers)
    print(f"wrote {args.images} images and {out / 'annotations.json'}")
    return 0


def cmd_data_synth_video(args: argparse.Namespace) -> int:
    from ..data.synthetic_video import generate_videos

    for flag, value in (("--videos", args.videos), ("--frames", args.frames)):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    if args.workers < 0:
        raise UsageError(f"--workers must be at least 0, got {args.workers}")
    if not 0 < args.fps < float("inf"):
        raise UsageError(f"--fps must be a positive number, got {args.fps}")
    out = generate_videos(args.out, args.videos, args.frames, seed=args.seed, image_size=args.imgsz, fps=args.fps,
                          workers=args.workers, mp4=args.mp4)
    print(f"wrote {args.videos} videos of {args.frames} frames and {out / 'annotations.json'} (YouTube-VIS)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ..train import map_validator, train

    if args.video_stage:
        return _cmd_train_video(args)
    if args.carry_protos:
        raise UsageError("--carry-protos is for video models: use it with --video-stage")
    for flag, value in (("--iters", args.iters), ("--batch", args.batch), ("--save-every", args.save_every),
                        ("--val-every", args.val_every), ("--val-limit", args.val_limit)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    device = None if args.device == "auto" else _training_device(args.device)
    best = train(
        args.data, config=args.config, weights=args.weights, backbone_weights=args.backbone_weights,
        iters=args.iters, epochs=args.epochs, batch_size=args.batch, input_size=args.imgsz, out_dir=args.out,
        resume=args.resume, exist_ok=args.exist_ok, lr=args.lr, optimizer_name=args.optimizer,
        clip_grad_norm=args.clip_grad, max_expand=args.max_expand, seed=args.seed, save_every=args.save_every,
        val_data=args.val_data, val_fn=map_validator(args.val_data, args.val_limit) if args.val_data else None,
        val_metric="mask_AP", val_every=args.val_every, num_workers=args.workers, threads=args.threads,
        device=device,
    )
    print(f"checkpoint: {best}")
    return 0


# Image-training flags a video stage has no use for (None or False when not given).
_NOT_FOR_VIDEO_STAGES = ("config", "backbone_weights", "epochs", "clip_grad", "max_expand", "resume", "val_data",
                         "val_every", "val_limit")


def _cmd_train_video(args: argparse.Namespace) -> int:
    from ..train.video import train_video

    given = [name for name in _NOT_FOR_VIDEO_STAGES if getattr(args, name) not in (None, False)]
    if given:
        raise UsageError(f"--{given[0].replace('_', '-')} does not apply to --video-stage (a video stage starts "
                         f"from --weights and trains --iters iterations)")
    for flag, value in (("--iters", args.iters), ("--batch", args.batch), ("--save-every", args.save_every)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    options = {"iters": args.iters, "batch_size": args.batch, "lr": args.lr, "optimizer_name": args.optimizer,
               "seed": args.seed, "input_size": args.imgsz, "weights": args.weights,
               "carry_protos": args.carry_protos or None}
    checkpoint = train_video(
        args.data, stage=args.video_stage, out_dir=args.out, exist_ok=args.exist_ok, save_every=args.save_every,
        threads=args.threads, device=None if args.device == "auto" else _training_device(args.device),
        **{k: v for k, v in options.items() if v is not None},
    )
    print(f"checkpoint: {checkpoint}")
    return 0


def _training_device(name: str) -> str:
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r}: give auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {name!r}: give auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA GPU is available here")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"--device {name}: there are {torch.cuda.device_count()} CUDA GPU(s)")
    return name


def _detector(args: argparse.Namespace, **options):
    from ..runtime import Detector

    names = _read_names(args.names) if args.names else None
    return Detector(args.model, backend=args.backend, num_threads=args.threads, delegate=args.delegate,
                    class_names=names, keyframe_interval=getattr(args, "keyframe_interval", 1), **options)


def _read_names(path: str) -> list[str]:
    """Class names from a file: a JSON list, or one name per line (blank lines ignored)."""
    import json

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"--names {path}: no such file") from None
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"--names {path}: not a JSON list of names ({exc})") from None
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names or not all(isinstance(n, str) for n in names):
        raise UsageError(f"--names {path}: expected a JSON list of strings or one name per line")
    return names


def _check_thresholds(args: argparse.Namespace) -> None:
    """Refuse thresholds that would silently change what is kept, naming the flag, before any model is loaded."""
    if not 0 <= args.conf <= 1:
        raise UsageError(f"--conf must lie in [0, 1], got {args.conf}")
    if getattr(args, "iou", None) is not None and not 0 < args.iou <= 1:
        raise UsageError(f"--iou must lie in (0, 1], got {args.iou}")
    if getattr(args, "max_det", None) is not None and args.max_det < 1:
        raise UsageError(f"--max-det must be at least 1, got {args.max_det}")


def cmd_predict(args: argparse.Namespace) -> int:
    from ..config import COCO_CATEGORY_IDS, COCO_CLASSES
    from ..predict import predict

    _check_thresholds(args)
    if args.latest and not any(s.isdigit() for s in args.source):
        raise UsageError("--latest drops stale camera frames; give a camera index as the source")
    if args.track and args.annotations:
        raise UsageError("--annotations sets COCO image ids; with --track, --save-json writes YouTube-VIS results")
    detector = _detector(
        args, score_threshold=args.conf, nms=args.nms, max_detections=args.max_det, iou_threshold=args.iou
    )
    category_ids = list(COCO_CATEGORY_IDS) if detector.class_names == COCO_CLASSES else None
    if args.annotations and not args.save_json:
        raise UsageError("--annotations gives --save-json its image ids; add --save-json FILE")
    report = predict(args.source, detector, out_dir=args.out, save_json=args.save_json, draw=not args.no_draw,
                     category_ids=category_ids, annotations=args.annotations, track=args.track,
                     latest=args.latest)
    median = sorted(report.inference_ms)[len(report.inference_ms) // 2] if report.inference_ms else 0.0
    print(f"{report.images} images, {report.detections} detections, median inference {median:.1f} ms"
          + (f"; annotated output in {args.out}" if report.written else ""))
    if report.failed:
        print(f"error: {report.failure_summary()}", file=sys.stderr)
        return 1
    return 0


def cmd_val(args: argparse.Namespace) -> int:
    from ..evaluate import PROTOCOL, evaluate, format_metrics, write_plots
    from ..fileio import atomic_write_json

    _check_thresholds(args)
    if args.video:
        return _val_video(args)
    if args.data or args.track or args.keyframe_interval != 1 or args.warped_of is not None:
        raise UsageError("--data, --track, --keyframe-interval and --warped-of are for --video; images use --images "
                         "and --annotations")
    if not (args.images and args.annotations):
        raise UsageError("val needs --images DIR and --annotations FILE (or --video --data DIR)")
    options = {**PROTOCOL, "score_threshold": args.conf}
    detector = _detector(args, **options)
    result = evaluate(detector, args.images, args.annotations, limit=args.limit,
                      categories_by_position=args.categories_by_position)
    print(f"{result.images_evaluated} images, {len(result.results)} detections")
    print(format_metrics(result))
    if args.save_json:
        atomic_write_json(args.save_json, result.results)
    if args.metrics_out:
        atomic_write_json(args.metrics_out, {**result.metrics, "per_class": result.per_class,
                                       "images": result.images_evaluated, "missing_images": result.missing_images})
    if args.plots:
        for path in write_plots(result, args.plots):
            print(f"plot: {path}")
    return 1 if result.missing_images else 0


def _val_video(args: argparse.Namespace) -> int:
    from ..evaluate import PROTOCOL, format_metrics
    from ..evaluate_video import evaluate_videos, format_video_metrics
    from ..fileio import atomic_write_json

    if not args.data:
        raise UsageError("val --video needs --data DIR (a YouTube-VIS folder with annotations.json)")
    if args.images or args.annotations or args.plots:
        raise UsageError("val --video reads --data; --images, --annotations and --plots are for image datasets")
    if not 0 <= args.track_conf <= 1:
        raise UsageError(f"--track-conf must lie in [0, 1], got {args.track_conf}")
    detector = _detector(args, **{**PROTOCOL, "score_threshold": args.conf})
    result = evaluate_videos(detector, args.data, track=args.track, track_threshold=args.track_conf,
                             limit=args.limit, categories_by_position=args.categories_by_position,
                             warped_of=args.warped_of)
    scored = f" (the warped frames of key-frame interval {args.warped_of})" if args.warped_of else ""
    print(f"{result.videos_evaluated} videos, {result.frames.images_evaluated} frames{scored}, "
          f"{len(result.frames.results)} detections")
    print(format_metrics(result.frames))
    if args.track:
        print(format_video_metrics(result))
    if args.save_json:
        atomic_write_json(args.save_json, result.track_results if args.track else result.frames.results)
    if args.metrics_out:
        atomic_write_json(args.metrics_out, {"frames": result.frames.metrics, "video": result.video,
                                             "tracking": result.tracking, "videos": result.videos_evaluated,
                                             "skipped": result.skipped})
    if result.skipped:
        print(f"error: {len(result.skipped)} videos skipped (first: {result.skipped[0]})", file=sys.stderr)
        return 1
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from ..bench import benchmark
    from ..fileio import atomic_write_json

    threads = _int_list(args.threads, "--threads")
    if args.ops:
        return _bench_ops(args, threads)
    if args.video:
        return _bench_video(args, threads)
    rows = benchmark(args.model, threads=threads, runs=args.runs, warmup=args.warmup, image=args.image,
                     delegate=args.delegate)
    if args.json_out:
        atomic_write_json(args.json_out, [r.to_dict() for r in rows])
    return 0


def _bench_video(args: argparse.Namespace, threads: list[int]) -> int:
    from ..bench_video import benchmark_video, format_video_rows
    from ..fileio import atomic_write_json

    if len(threads) != 1 or len(args.model) != 1:
        raise UsageError("--video measures one model at one thread count; give --model M --threads N")
    if args.image:
        raise UsageError("--image and --video are two different benchmarks; give one")
    if not 0 <= args.conf <= 1:
        raise UsageError(f"--conf must lie in [0, 1], got {args.conf}")
    rows = benchmark_video(args.model[0], args.video, threads=threads[0], delegate=args.delegate,
                           score_threshold=args.conf)
    print(f"{args.video}: {Path(args.model[0]).name}, inference on {threads[0]} thread(s)")
    print(format_video_rows(rows))
    if args.json_out:
        atomic_write_json(args.json_out, [r.to_dict() for r in rows])
    return 0


def _bench_ops(args: argparse.Namespace, threads: list[int]) -> int:
    from ..fileio import atomic_write_json
    from ..opprofile import format_outside, format_side_by_side, profile_side_by_side

    if len(threads) != 1:
        raise UsageError("--ops profiles at one thread count; give --threads N")
    paths = [Path(m) for m in args.model]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model file")
        if path.suffix.lower() != ".tflite":
            raise UsageError(f"--ops profiles .tflite files; {path.name} is not one")
    profiles = profile_side_by_side(paths, threads=threads[0], runs=args.runs, warmup=args.warmup)
    print(f"per-operator profile, {threads[0]} thread(s); each op run alone, 'outside' = not taken by XNNPACK")
    print(format_side_by_side(profiles))
    for profile in profiles:
        print(format_outside(profile))
    if args.json_out:
        atomic_write_json(args.json_out, [p.to_dict() for p in profiles])
    return 0


def _int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated integers, got {text!r}") from None


def cmd_compare(args: argparse.Namespace) -> int:
    from ..evaluate import MIN_RESAMPLES, compare, format_compare

    if args.interval and (len(args.model) < 2 or args.interval < MIN_RESAMPLES):
        raise UsageError(f"--interval compares each --model with the first: give at least two --model and "
                         f"--interval {MIN_RESAMPLES} or more (got {len(args.model)} and {args.interval})")
    rows = compare(args.model, args.images, args.annotations, limit=args.limit, num_threads=args.threads,
                   resamples=args.interval)
    print(format_compare(rows, args.interval))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(args.model, args.source, out_dir=args.out, threads=args.threads)
    return 0
