"""The demo model's AP at 550 for each target's int8 graph, against its float ONNX model at 550.

At 550 the FPN upsamples 18→35 and 35→69, so this is where the imx93 graph's separable upsampling matters (the
demo model's own 320 has exact 2x factors). The imx93 row is its int8 graph before Vela: the compiled file runs
only on the Ethos-U65. All files are calibrated on the same synthetic renders and evaluated on the same
synthetic images (`yolactedge data synth`) with `yolactedge compare`'s protocol. Every file passes the export's
own verification first (the box error scaled by the box's size, see docs/int8-accuracy.md: the demo model trained
at 320 used to miss the unscaled limit at 550).

    python benchmarks/demo_targets_ap.py --images 40 --keep DIR
    python benchmarks/demo_targets_ap.py --images 40 --no-equalise    # the same files without stream equalisation
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import warnings
from pathlib import Path

SIZE = 550


def imx93_graph_int8(workdir: Path, calib_count: int, calib_seed: int, equalise: bool) -> Path:
    """The int8 file `--target imx93` hands to Vela: the imx93 graph form's ONNX, its streams equalised on the
    export's own calibration images (as the export does before its ONNX step, unless `equalise` is off), converted
    as it is."""
    from yolactedge.export import export_model
    from yolactedge.export.calibration import calibration_dataset
    from yolactedge.export.common import TARGET_GRAPHS
    from yolactedge.export.equalise import export_streams
    from yolactedge.export.onnx import export_onnx, resolve_model

    form = TARGET_GRAPHS["imx93"]
    onnx_path = workdir / "demo_550_imx93_graph.onnx"
    model = resolve_model("demo", SIZE).module
    images, _ = calibration_dataset(None, calib_count, calib_seed, SIZE, progress=False)
    with export_streams(model, images, equalise) as report:
        export_onnx(model, onnx_path, separable_upsampling=form.separable_upsampling,
                    fold_input_std=form.fold_input_std, progress=False)
    print(f"imx93 graph: streams equalised on stages {report['stages']}")
    return export_model(onnx_path, "tflite", target="imx8mp", calib_count=calib_count, calib_seed=calib_seed,
                        output=workdir / "demo_550_imx93_before_vela.tflite", progress=False).path


def main(argv: list[str] | None = None) -> int:
    from yolactedge.export.calibration import DEFAULT_CALIB_SEED

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40, help="synthetic evaluation images")
    parser.add_argument("--calib-count", type=int, default=100)
    parser.add_argument("--calib-seed", type=int, default=DEFAULT_CALIB_SEED)
    parser.add_argument("--keep", help="keep the files in this folder")
    parser.add_argument("--no-equalise", action="store_true", help="export every file with `--no-equalise`")
    args = parser.parse_args(argv)

    from yolactedge.data.synthetic import generate_dataset
    from yolactedge.evaluate import compare, format_compare
    from yolactedge.export import export_model

    with contextlib.ExitStack() as stack:
        workdir = Path(args.keep) if args.keep else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        workdir.mkdir(parents=True, exist_ok=True)
        data = generate_dataset(workdir / "synth", args.images, seed=550, image_size=SIZE, workers=0,
                                progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # synthetic calibration images
            models = [export_model("demo", "onnx", imgsz=SIZE, output=workdir / "demo_550.onnx",
                                   progress=False).path]
            for target in ("imx8mp", "cpu"):
                models.append(export_model("demo", "tflite", imgsz=SIZE, target=target, calib_count=args.calib_count,
                                           calib_seed=args.calib_seed, output=workdir / f"demo_550_{target}.tflite",
                                           progress=False, equalise=not args.no_equalise).path)
            models.append(imx93_graph_int8(workdir, args.calib_count, args.calib_seed, not args.no_equalise))
        rows = compare([str(m) for m in models], data / "images", data / "annotations.json", progress=False)
    streams = "not equalised (--no-equalise)" if args.no_equalise else "equalised (the default)"
    print(f"demo model at {SIZE}, {args.images} synthetic images (yolactedge compare); calibration seed "
          f"{args.calib_seed}, streams {streams}")
    print(format_compare(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
