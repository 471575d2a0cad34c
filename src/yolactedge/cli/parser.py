"""The argument parser: one function per verb, each adding its options with their defaults shown in --help."""
from __future__ import annotations

import argparse

from .. import __version__
from ..export.calibration import DEFAULT_CALIB_SEED
from ..export.common import TARGETS
from ..runtime.detector import DEFAULT_SCORE_THRESHOLD
from .commands import (
    cmd_bench, cmd_compare, cmd_data_synth, cmd_data_synth_video, cmd_demo, cmd_export, cmd_info,
    cmd_predict, cmd_train, cmd_val,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yolactedge",
        description="YOLACT-Edge instance segmentation: convert, run, evaluate, benchmark, train.",
        epilog=("examples:\n"
                "  yolactedge demo\n"
                "  yolactedge export demo --format tflite\n"
                "  yolactedge predict photos/ clip.mp4 --model demo_int8.tflite --save-json results.json\n"
                "  yolactedge predict clip.mp4 --model demo_int8.tflite --track\n"
                "  yolactedge val --model demo_int8.tflite --images val/images --annotations val/annotations.json\n"
                "  yolactedge bench --model demo_int8.tflite --threads 1,2\n"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"yolactedge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_demo(sub)
    _add_info(sub)
    _add_export(sub)
    _add_data(sub)
    _add_train(sub)
    _add_predict(sub)
    _add_val(sub)
    _add_bench(sub)
    _add_compare(sub)
    return parser


def _add_demo(sub) -> None:
    demo = sub.add_parser("demo", help="the demo model, int8 TFLite built and cached, on the sample images")
    demo.add_argument("--model", default="demo",
                      help="checkpoint (.pth; 'demo-video' or another video model runs in video mode, a key frame "
                           "every 5) or an exported .onnx/.tflite")
    demo.add_argument("--source", help="image, folder, glob or video (default: the shipped samples; for a video "
                                       "model a synthetic clip)")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--threads", type=int)
    demo.set_defaults(func=cmd_demo)


def _add_info(sub) -> None:
    info = sub.add_parser("info", help="describe a model: config, parameters, MACs, input and output shapes")
    info.add_argument("model", help="checkpoint (.pth), .onnx, .tflite, 'demo' or 'demo-video'")
    info.set_defaults(func=cmd_info)


def _add_export(sub) -> None:
    export = sub.add_parser("export", help="convert a model to ONNX or (int8) TFLite, offline, and verify the result")
    export.add_argument("model", help="checkpoint (.pth), 'demo', or (for --format tflite) a YOLACT-Edge .onnx; "
                        "with --verify-only, an existing .tflite")
    export.add_argument("--format", choices=("onnx", "tflite"), default="tflite",
                        help="tflite (default) or onnx; a video model is two files: OUT.tflite/.onnx (key frame) and "
                             "OUT_warp.tflite/.onnx (warped frame), which the runtime finds beside it")
    export.add_argument("--precision", choices=("fp32", "fp16", "int8", "int16x8"), default=None,
                        help="TFLite precision (default int8)")
    export.add_argument("--calib", help="folder of calibration images (jpg/png/bmp, searched recursively); for a "
                        "video model, consecutive frames of a video in sorted name order")
    export.add_argument("--calib-count", type=int, default=100)
    export.add_argument("--calib-seed", type=int, default=DEFAULT_CALIB_SEED)
    export.add_argument("--imgsz", type=int, help="input size (default: the model's own)")
    export.add_argument("--output", help="output file (default: beside the model)")
    export.add_argument("--target", choices=TARGETS,
                        help="cpu: int8 with float softmax/exp (XNNPACK); imx8mp: all int8 for the NPU; "
                             "imx93: all int8 compiled for the Ethos-U65 with Vela")
    export.add_argument("--carry-protos", action="store_true",
                        help="video model, --format onnx: warped frames warp the key frame's prototypes instead of "
                             "running the protonet (ours, not YOLACT-Edge's: faster on MobileNetV2 but loses mask AP, "
                             "see docs/export.md)")
    export.add_argument("--no-equalise", action="store_true",
                        help="int8/int16x8: convert the model as it is, without first equalising MobileNetV2's "
                             "residual streams on the calibration images (docs/int8-accuracy.md)")
    export.add_argument("--no-verify", action="store_true", help="skip the check against the float model")
    export.add_argument("--verify-only", action="store_true", help="verify an existing .tflite against its float model")
    export.add_argument("--reference", help="with --verify-only: the float checkpoint, 'demo' or .onnx to compare with")
    export.set_defaults(func=cmd_export)


def _add_data(sub) -> None:
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
    synth.set_defaults(func=cmd_data_synth)
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
    synth_video.set_defaults(func=cmd_data_synth_video)


def _add_train(sub) -> None:
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
    train.add_argument("--video-stage", choices=("flow", "warp"),
                       help="train a video model's temporal part on a YouTube-VIS --data from --weights (an image "
                            "or video checkpoint, default demo): flow = the flow net alone (feature matching), "
                            "warp = fine-tune on warped frames (the original's second stage)")
    train.add_argument("--carry-protos", action="store_true",
                       help="with --video-stage: the model carries the key frame's prototypes to warped frames (ours); "
                            "the flow stage also trains the flow to move them")
    train.set_defaults(func=cmd_train)


def _runtime_options(p: argparse.ArgumentParser) -> None:
    """Options of every verb that runs a model."""
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime", "litert"))
    p.add_argument("--threads", type=int, help="CPU threads of the runtime")
    p.add_argument("--delegate", help="LiteRT external delegate library, e.g. /usr/lib/libvx_delegate.so")
    p.add_argument("--names", help="class names (JSON list or one per line) for a model file that has none")


def _keyframe_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--keyframe-interval", type=int, default=1, metavar="K",
                   help=f"video model: every K-th frame of {what} is a key frame, the others are warped from it "
                        "(YOLACT-Edge's video mode; 1, the default, runs every frame as an image)")


def _add_predict(sub) -> None:
    predict = sub.add_parser("predict", help="detect in images, folders, globs, videos or a camera index")
    predict.add_argument("source", nargs="+", help="image files, folders, globs, video files, or a camera index")
    predict.add_argument("--model", default="demo", help="model file (.pth/.onnx/.tflite), 'demo' (default) or 'demo-video'")
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
    _keyframe_option(predict, "each video (and of the images given, with --track)")
    _runtime_options(predict)
    predict.set_defaults(func=cmd_predict)


def _add_val(sub) -> None:
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
    val.add_argument("--warped-of", type=int, metavar="K",
                     help="with --video: score only the frames a video model warps at key-frame interval K "
                          "(any model, so an image model gives the per-frame reference on the same frames)")
    val.add_argument("--conf", type=float, default=0.05, help="score prefilter (protocol: 0.05)")
    val.add_argument("--save-json", help="write the COCO results JSON (with --track: YouTube-VIS results)")
    val.add_argument("--categories-by-position", action="store_true",
                     help="pair model classes with annotation categories in id order instead of by exact name")
    val.add_argument("--metrics-out", help="write {bbox: {AP...}, segm: {...}} JSON")
    val.add_argument("--plots", help="folder for precision-recall and per-class AP plots (PNG)")
    _keyframe_option(val, "each video (with --video)")
    _runtime_options(val)
    val.set_defaults(func=cmd_val)


def _add_bench(sub) -> None:
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
    bench.set_defaults(func=cmd_bench)


def _add_compare(sub) -> None:
    comp = sub.add_parser("compare", help="AP and latency of several files of one model, with the drop vs the first")
    comp.add_argument("--model", action="append", required=True, help="repeat: --model a.pth --model b.tflite")
    comp.add_argument("--images", required=True)
    comp.add_argument("--annotations", required=True)
    comp.add_argument("--limit", type=int)
    comp.add_argument("--threads", type=int)
    comp.add_argument("--interval", type=int, default=0, metavar="N",
                      help="also each file's box and mask AP as a share of the first file's, with its 95%% "
                           "interval over N paired bootstrap resamples of the images (e.g. 300: about 40 s per "
                           "file on 500 images): how far another set of such images could move a drop")
    comp.set_defaults(func=cmd_compare)
