"""`yolactedge <command>`: a thin layer over the Python API, one verb per job.

Every failure the user can cause ends in a one-line `error: ...` on stderr and a non-zero exit, never a
traceback (set YOLACTEDGE_DEBUG=1 to see one).
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from pathlib import Path

from . import __version__
from .runtime.detector import DEFAULT_SCORE_THRESHOLD


class UsageError(ValueError):
    """Bad arguments the parser itself cannot catch."""


# The extra that installs each optional package, for the one-line error of a verb run without it.
EXTRA_OF_PACKAGE = {
    "torch": "torch", "onnx": "onnx", "onnxruntime": "onnx", "onnxsim": "convert", "onnx2tf": "convert",
    "tensorflow": "convert", "tf_keras": "convert", "ethosu": "convert", "ai_edge_litert": "litert",
    "tflite_runtime": "litert", "pycocotools": "eval", "matplotlib": "eval",
}


def missing_extra_message(exc: ModuleNotFoundError) -> str | None:
    """'this command needs X: pip install "yolactedge[extra]"' for a package one of our extras installs."""
    package = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_PACKAGE.get(package)
    return f"this command needs {package}: pip install \"yolactedge[{extra}]\"" if extra else None


def _cmd_info(args: argparse.Namespace) -> int:
    from .info import describe_model

    print(describe_model(args.model))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_model, verify_tflite

    if args.verify_only:
        if not args.reference:
            raise UsageError("--verify-only needs --reference: the float checkpoint or .onnx the file came from")
        verify_tflite(args.model, args.reference)
        return 0
    result = export_model(
        args.model, args.format, precision=args.precision, calib=args.calib, calib_count=args.calib_count,
        calib_seed=args.calib_seed, imgsz=args.imgsz, output=args.output, target=args.target,
        verify=not args.no_verify,
    )
    print(result.summary())
    return 0


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from .data.synthetic import generate_dataset

    if args.images < 1:
        raise UsageError(f"--images must be at least 1, got {args.images}")
    if args.workers < 0:
        raise UsageError(f"--workers must be at least 0, got {args.workers}")
    out = generate_dataset(args.out, args.images, seed=args.seed, image_size=args.imgsz, workers=args.workers)
    print(f"wrote {args.images} images and {out / 'annotations.json'}")
    return 0


def _cmd_data_synth_video(args: argparse.Namespace) -> int:
    from .data.synthetic_video import generate_videos

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


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import map_validator, train

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
    from .runtime import Detector

    names = _read_names(args.names) if args.names else None
    return Detector(args.model, backend=args.backend, num_threads=args.threads, delegate=args.delegate,
                    class_names=names, **options)


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


def _cmd_predict(args: argparse.Namespace) -> int:
    from .config import COCO_CATEGORY_IDS, COCO_CLASSES
    from .predict import predict

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
        print(f"error: {len(report.failed)} inputs could not be read (first: {report.failed[0]})", file=sys.stderr)
        return 1
    return 0


def _cmd_val(args: argparse.Namespace) -> int:
    from .evaluate import PROTOCOL, evaluate, format_metrics, write_plots
    from .fileio import atomic_write_json

    _check_thresholds(args)
    if args.video:
        return _val_video(args)
    if args.data or args.track:
        raise UsageError("--data and --track are for --video; images use --images and --annotations")
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
    from .evaluate import PROTOCOL, format_metrics
    from .evaluate_video import evaluate_videos, format_video_metrics
    from .fileio import atomic_write_json

    if not args.data:
        raise UsageError("val --video needs --data DIR (a YouTube-VIS folder with annotations.json)")
    if args.images or args.annotations or args.plots:
        raise UsageError("val --video reads --data; --images, --annotations and --plots are for image datasets")
    if not 0 <= args.track_conf <= 1:
        raise UsageError(f"--track-conf must lie in [0, 1], got {args.track_conf}")
    detector = _detector(args, **{**PROTOCOL, "score_threshold": args.conf})
    result = evaluate_videos(detector, args.data, track=args.track, track_threshold=args.track_conf,
                             limit=args.limit, categories_by_position=args.categories_by_position)
    print(f"{result.videos_evaluated} videos, {result.frames.images_evaluated} frames, "
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


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import benchmark
    from .fileio import atomic_write_json

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
    from .bench_video import benchmark_video, format_video_rows
    from .fileio import atomic_write_json

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
    from .fileio import atomic_write_json
    from .opprofile import format_outside, format_side_by_side, profile_side_by_side

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


def _cmd_compare(args: argparse.Namespace) -> int:
    from .evaluate import compare, format_compare

    rows = compare(args.model, args.images, args.annotations, limit=args.limit, num_threads=args.threads)
    print(format_compare(rows))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.model, args.source, out_dir=args.out, threads=args.threads)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yolactedge",
        description="YOLACT-Edge instance segmentation: convert, run, evaluate, benchmark, train.",
        epilog="examples:\n  yolactedge demo\n  yolactedge info demo\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"yolactedge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo = sub.add_parser("demo", help="the demo model, int8 TFLite built and cached, on the sample images")
    demo.add_argument("--model", default="demo", help="checkpoint (.pth) or an exported .onnx/.tflite")
    demo.add_argument("--source", help="image, folder, glob or video (default: the shipped samples)")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--threads", type=int)
    demo.set_defaults(func=_cmd_demo)

    info = sub.add_parser("info", help="describe a model: config, parameters, MACs, input and output shapes")
    info.add_argument("model", help="checkpoint (.pth), .onnx, .tflite, or 'demo'")
    info.set_defaults(func=_cmd_info)

    export = sub.add_parser("export", help="convert a model to ONNX or (int8) TFLite, offline, and verify the result")
    export.add_argument("model", help="checkpoint (.pth), 'demo', or (for --format tflite) a YOLACT-Edge .onnx; "
                        "with --verify-only, an existing .tflite")
    export.add_argument("--format", choices=("onnx", "tflite"), default="tflite")
    export.add_argument("--precision", choices=("fp32", "fp16", "int8", "int16x8"), default=None,
                        help="TFLite precision (default int8)")
    export.add_argument("--calib", help="folder of calibration images (jpg/png/bmp, searched recursively)")
    export.add_argument("--calib-count", type=int, default=100)
    export.add_argument("--calib-seed", type=int, default=1337)
    export.add_argument("--imgsz", type=int, help="input size (default: the model's own)")
    export.add_argument("--output", help="output file (default: beside the model)")
    export.add_argument("--target", choices=("imx8mp", "imx93"), help="imx93 compiles for the Ethos-U65 with Vela")
    export.add_argument("--no-verify", action="store_true", help="skip the check against the float model")
    export.add_argument("--verify-only", action="store_true", help="verify an existing .tflite against its float model")
    export.add_argument("--reference", help="with --verify-only: the float checkpoint, 'demo' or .onnx to compare with")
    export.set_defaults(func=_cmd_export)

    data = sub.add_parser("data", help="datasets: generate the synthetic instance-segmentation set")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data_sub.required = True
    synth = data_sub.add_parser("synth", help="write DIR/images/*.jpg and DIR/annotations.json (COCO format)")
    synth.add_argument("--out", required=True)
    synth.add_argument("--images", type=int, required=True)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--imgsz", type=int, default=320)
    synth.add_argument("--workers", type=int, default=0,
                       help="processes rendering images (the files are the same for any number)")
    synth.set_defaults(func=_cmd_data_synth)
    synth_video = data_sub.add_parser(
        "synth-video", help="write DIR/JPEGImages/<video>/*.jpg and DIR/annotations.json (YouTube-VIS format)")
    synth_video.add_argument("--out", required=True)
    synth_video.add_argument("--videos", type=int, required=True)
    synth_video.add_argument("--frames", type=int, required=True, help="frames per video")
    synth_video.add_argument("--seed", type=int, default=0)
    synth_video.add_argument("--imgsz", type=int, default=320)
    synth_video.add_argument("--fps", type=float, default=10.0, help="frame rate of the --mp4 files")
    synth_video.add_argument("--workers", type=int, default=0,
                             help="processes rendering videos (the files are the same for any number)")
    synth_video.add_argument("--mp4", action="store_true", help="also write DIR/videos/<video>.mp4")
    synth_video.set_defaults(func=_cmd_data_synth_video)

    train = sub.add_parser("train", help="train on a COCO-format dataset (also under torchrun for DDP)")
    train.add_argument("--data", required=True, help="dataset folder (images/ + annotations.json) or ANN.json")
    # Run-defining options default to None (= not given): a new run takes the default in the help, a resumed
    # run its saved value, and a given value that contradicts the saved one is an error.
    train.add_argument("--config", help="preset name (see yolactedge info --presets; default yolact_edge_demo)")
    train.add_argument("--weights", help="checkpoint to fine-tune from (class layers re-initialised if needed)")
    train.add_argument("--backbone-weights",
                       help="ImageNet backbone to start from: torchvision mobilenet_v2 / resnet50 / resnet101 .pth")
    length = train.add_mutually_exclusive_group()
    length.add_argument("--iters", type=int, help="length of the run; with --resume a longer one extends it")
    length.add_argument("--epochs", type=float, help="length of the run in passes over --data (default 20)")
    train.add_argument("--batch", type=int, help="images per step and process (default 8)")
    train.add_argument("--imgsz", type=int, help="input size (default: the preset's)")
    train.add_argument("--lr", type=float, help="learning rate after warm-up (default 1e-3)")
    train.add_argument("--optimizer", choices=("sgd", "adamw"),
                       help="sgd as the original (default); adamw converges faster from scratch")
    train.add_argument("--clip-grad", type=float, help="clip the gradient norm (helps from-scratch starts)")
    train.add_argument("--max-expand", type=float,
                       help="largest zoom-out of the expand augmentation (4 as the original; 1 turns it off)")
    train.add_argument("--out", default="runs/train")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out with all its saved settings (a flag contradicting one is an "
                            "error; a longer --iters extends the run)")
    train.add_argument("--exist-ok", action="store_true",
                       help="start a new run in an --out that holds one, replacing its checkpoints and metrics")
    train.add_argument("--save-every", type=int, default=200,
                       help="iterations between checkpoints (last.pth and the resume state; default 200)")
    train.add_argument("--val-data", help="dataset for periodic validation mAP")
    train.add_argument("--val-every", type=int)
    train.add_argument("--val-limit", type=int, help="validate on the first N images only")
    train.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a busy 2-core machine)")
    train.add_argument("--device", default="auto", help="auto (a CUDA GPU when there is one), cpu, cuda or cuda:N")
    train.add_argument("--workers", type=int, default=0)
    train.add_argument("--seed", type=int, help="seed of initialisation, sampling and augmentation (default 0)")
    train.set_defaults(func=_cmd_train)

    def runtime_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime", "litert"))
        p.add_argument("--threads", type=int, help="CPU threads of the runtime")
        p.add_argument("--delegate", help="LiteRT external delegate library, e.g. /usr/lib/libvx_delegate.so")
        p.add_argument("--names", help="class names (JSON list or one per line) for a model file that has none")

    predict = sub.add_parser("predict", help="detect in images, folders, globs, videos or a camera index")
    predict.add_argument("source", nargs="+", help="image files, folders, globs, video files, or a camera index")
    predict.add_argument("--model", default="demo", help="model file (.pth/.onnx/.tflite) or 'demo' (default)")
    predict.add_argument("--out", default="runs/predict", help="folder for annotated images/videos")
    predict.add_argument("--save-json", help="write COCO results (RLE masks) to this file")
    predict.add_argument("--annotations", help="with --save-json: COCO JSON whose image ids the results take "
                         "(matched by file name); without it, ids are derived from each file name")
    predict.add_argument("--conf", type=float, default=DEFAULT_SCORE_THRESHOLD,
                         help=f"score threshold, 0..1 (default {DEFAULT_SCORE_THRESHOLD}, as Detector's)")
    predict.add_argument("--iou", type=float, default=0.5, help="NMS IoU threshold")
    predict.add_argument("--nms", default="fast", choices=("fast", "standard", "class_agnostic"))
    predict.add_argument("--max-det", type=int, default=100)
    predict.add_argument("--no-draw", action="store_true", help="do not write annotated images")
    predict.add_argument("--track", action="store_true",
                         help="give detections track ids across video frames (or across the images given, in "
                              "order); --save-json then writes YouTube-VIS results")
    predict.add_argument("--latest", action="store_true",
                         help="camera: skip frames that arrive while the model is busy (latency near one inference)")
    runtime_options(predict)
    predict.set_defaults(func=_cmd_predict)

    val = sub.add_parser("val", help="COCO box and mask mAP with the original YOLACT protocol")
    val.add_argument("--model", default="demo")
    val.add_argument("--images", help="folder the annotations' file_name entries are relative to")
    val.add_argument("--annotations", help="COCO-format annotation JSON")
    val.add_argument("--video", action="store_true", help="evaluate on a YouTube-VIS dataset (--data DIR)")
    val.add_argument("--data", help="with --video: folder with annotations.json and JPEGImages/")
    val.add_argument("--track", action="store_true",
                     help="with --video: also track, and score the tracks (video AP, HOTA, IDF1, ID switches)")
    val.add_argument("--track-conf", type=float, default=DEFAULT_SCORE_THRESHOLD,
                     help="with --track: score at which detections are tracked (as predict --conf)")
    val.add_argument("--limit", type=int, help="evaluate only the first N images (by id), or N videos")
    val.add_argument("--conf", type=float, default=0.05, help="score prefilter (protocol: 0.05)")
    val.add_argument("--save-json", help="write the COCO results JSON (with --track: YouTube-VIS results)")
    val.add_argument("--categories-by-position", action="store_true",
                     help="pair model classes with annotation categories in id order instead of by exact name")
    val.add_argument("--metrics-out", help="write {bbox: {AP...}, segm: {...}} JSON")
    val.add_argument("--plots", help="folder for precision-recall and per-class AP plots (PNG)")
    runtime_options(val)
    val.set_defaults(func=_cmd_val)

    bench = sub.add_parser("bench", help="latency per stage, per thread count, like benchmark_model")
    bench.add_argument("--model", nargs="+", default=["demo"])
    bench.add_argument("--threads", default="2", help="comma-separated thread counts, e.g. 1,2,4")
    bench.add_argument("--runs", type=int, default=50)
    bench.add_argument("--warmup", type=int, default=5)
    bench.add_argument("--image", help="image to run on (default: a synthetic 1920x1080 scene)")
    bench.add_argument("--delegate", help="LiteRT external delegate library")
    bench.add_argument("--ops", action="store_true",
                       help="per-operator profile of .tflite files, side by side (like --enable_op_profiling)")
    bench.add_argument("--video", help="a video file: frames per second with the stages one after another and "
                       "pipelined (decode, inference, post-processing, drawing, encoding)")
    bench.add_argument("--conf", type=float, default=DEFAULT_SCORE_THRESHOLD,
                       help="with --video: score threshold of the detections drawn (as predict's)")
    bench.add_argument("--json-out", help="write the rows as JSON")
    bench.set_defaults(func=_cmd_bench)

    comp = sub.add_parser("compare", help="AP and latency of several files of one model, with the drop vs the first")
    comp.add_argument("--model", action="append", required=True, help="repeat: --model a.pth --model b.tflite")
    comp.add_argument("--images", required=True)
    comp.add_argument("--annotations", required=True)
    comp.add_argument("--limit", type=int)
    comp.add_argument("--threads", type=int)
    comp.set_defaults(func=_cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(os.environ.get("YOLACTEDGE_DEBUG"))
    if not debug:
        warnings.simplefilter("default")
        warnings.formatwarning = lambda message, category, *rest: f"warning: {message}\n"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {missing_extra_message(exc) or exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the one place that turns failures into one-line messages
        if debug:
            traceback.print_exc()
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        known = isinstance(exc, (ValueError, OSError, ImportError, RuntimeError))
        prefix = "error" if known else f"error ({type(exc).__name__})"
        print(f"{prefix}: {message}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1


if __name__ == "__main__":
    sys.exit(main())
