"""The export pipelines: `export_model` (what the CLI calls) and `export_tflite`, composing the stages.

checkpoint → ONNX (`onnx`) → Keras (`onnx2tf_step`) → TFLite bytes (`converter`, `fastcalib`) → checked
(`tflite_file`, `tflite_finish`) → verified (`verify`) → optionally compiled by Vela (`vela`) → moved into place
atomically. A video model's pair goes through `tflite_video`, which shares those stages.
"""
from __future__ import annotations

import functools
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from ..assets import is_shipped_name
from ..modelmeta import model_metadata
from .calibration import DEFAULT_CALIB_SEED, calibration_dataset, held_out_images
from .common import (
    FORMATS, NPU_TARGETS, PRECISIONS, TARGET_GRAPHS, TARGETS, ExportError, ExportResult, Stages, atomic_replace,
)
from .tflite_finish import (
    calibration_summary, checked_interface, compile_for_npu, float_box_decode, float_ops_for, warn, write_reports,
)

VERIFY_SEED_OFFSET = 1  # held-out images use calib_seed + 1


def check_request(format: str, precision: str | None, target: str | None) -> str:
    """Validate the format/precision/target combination up front; → the effective precision."""
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    if precision is not None and precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if target is not None and target not in TARGETS:
        raise ExportError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    if format == "onnx":
        if precision not in (None, "fp32"):
            raise ExportError(f"ONNX export is float32 only; --precision {precision} applies to --format tflite")
        if target is not None:
            precision_hint = " --precision int8" if target in NPU_TARGETS else ""
            raise ExportError(f"--target {target} needs --format tflite{precision_hint}")
        return "fp32"
    precision = precision or "int8"
    if target in NPU_TARGETS and precision != "int8":
        raise ExportError(f"--target {target} builds int8 graphs for its NPU: use --precision int8, not {precision} "
                          f"(or --target cpu)")
    return precision


def default_output(source: Any, config_name: str, format: str, precision: str, target: str | None) -> Path:
    """Beside the checkpoint/ONNX file when there is one, else in the current directory."""
    if isinstance(source, (str, os.PathLike)) and not is_shipped_name(source):
        base = Path(source).with_suffix("")
    else:
        base = Path.cwd() / config_name
    if format == "onnx":
        return base.with_name(base.name + ".onnx")
    suffix = f"_{precision}" + ("_vela" if target == "imx93" else "")
    return base.with_name(base.name + suffix + ".tflite")


def check_output_suffix(output: str | os.PathLike, format: str) -> None:
    """An output file must carry its format's suffix: the runtime picks its backend by suffix."""
    path = Path(output).expanduser()
    if path.is_dir():
        return
    if path.suffix.lower() != f".{format}":
        raise ExportError(f"--output {path.name} does not end in .{format} (--format {format}); "
                          f"name the file *.{format} or give a folder")


def check_output_path(output: str | os.PathLike, default_name: str) -> Path:
    """The final file path, after proving that its folder can take a new file (nothing is left behind)."""
    path = Path(output).expanduser()
    if path.is_dir():
        path = path / default_name
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None
    if path.exists() and not path.is_file():
        raise ExportError(f"cannot write {path}: it exists and is not a file")
    return path


def export_model(
    model: Any,
    format: str = "tflite",
    *,
    precision: str | None = None,
    calib: str | os.PathLike | None = None,
    calib_count: int = 100,
    calib_seed: int = DEFAULT_CALIB_SEED,
    imgsz: int | None = None,
    output: str | os.PathLike | None = None,
    target: str | None = None,
    verify: bool = True,
    progress: bool = True,
    verify_count: int | None = None,
    carry_protos: bool = False,
    equalise: bool = True,
) -> ExportResult:
    """Export a YOLACT-Edge model to ONNX or TFLite.

    model: a `YolactEdge` module, a checkpoint path, "demo", or (format "tflite") a YOLACT-Edge .onnx file.
    precision: TFLite only: "fp32", "fp16", "int8" (default; full integer, int8 input, float32 outputs) or
        "int16x8" (int16 activations, int8 weights, float32 input and outputs). ONNX is always fp32.
    calib: folder of calibration images (searched recursively); None renders synthetic images (with a warning).
    target: the graph's form (`common.TARGET_GRAPHS`, same values): "cpu" (int8 with SOFTMAX and EXP in float,
        which XNNPACK runs faster; any precision), "imx8mp" (the plain all-int8 graph, for the i.MX 8M Plus NPU)
        or "imx93" (all int8, FPN upsampling in an NPU-placeable form, compiled by Vela for the Ethos-U65).
        None: the plain graph.
    carry_protos: a video model's ONNX pair whose warped graph warps the key frame's prototypes instead of running
        the protonet (ours, not the original's; `ModelConfig.carry_protos`). A model whose config already carries
        them exports that pair without it.
    equalise: int8 / int16x8 from a checkpoint: equalise the MobileNetV2 residual streams on the calibration
        images first (`export.equalise`; the float model does not change, the int8 grid serves every channel).
        False converts the model as it is, to compare the two on one's own images.
    verify: run the TFLite file through the runtime against the float ONNX model on `verify_count` held-out
        images (default 4; 2 for int16x8, whose kernels have no fast CPU path); a file below its precision's
        thresholds is a VerificationError and is not written, else `<output stem>.verify.json` goes beside it.
    """
    precision = check_request(format, precision, target)
    if carry_protos and format != "onnx":
        raise ExportError("--carry-protos applies to a video model's ONNX pair: use --format onnx")
    if output is not None:
        check_output_suffix(output, format)
    if calib_count < 1:
        raise ExportError(f"--calib-count must be at least 1, got {calib_count}")
    if target == "imx93":
        from .vela import vela_available

        if not vela_available():
            raise ExportError("--target imx93 needs the Vela compiler: pip install ethos-u-vela")

    from .onnx import resolve_model

    stages = Stages(total=_stage_count(format, precision, target, verify, model), verbose=progress)
    source = stages.run("load model", resolve_model, model, imgsz)
    default = default_output(model, source.config.name, format, precision, target)
    path = check_output_path(output, default.name) if output is not None else check_output_path(default, default.name)

    if format == "onnx":
        if source.module is None:
            raise ExportError(f"{model} is already an ONNX model; give the checkpoint to re-export it")
        if carry_protos and not source.config.video:
            raise ExportError(f"--carry-protos needs a video model; {source.config.name} is an image model")
        return _export_onnx_file(stages, source, path, progress, carry_protos)
    if calib is not None and precision not in ("int8", "int16x8"):
        warn(f"--calib is only used by int8 and int16x8; ignored for {precision}")
    if not equalise and precision not in ("int8", "int16x8"):
        warn(f"--no-equalise is only used by int8 and int16x8 (calibrated); ignored for {precision}")
    if source.module is not None and source.module.config.video:
        from .tflite_video import export_video_tflite

        return export_video_tflite(source, path, precision=precision, calib=calib, calib_count=calib_count,
                                   calib_seed=calib_seed, target=target, verify=verify, verify_count=verify_count,
                                   progress=progress, stages=stages, equalise=equalise)
    return export_tflite(
        source, path, precision=precision, calib=calib, calib_count=calib_count, calib_seed=calib_seed,
        target=target, verify=verify, verify_count=verify_count, progress=progress, stages=stages, equalise=equalise,
    )


def _export_onnx_file(stages: Stages, source, path: Path, progress: bool, carry_protos: bool) -> ExportResult:
    """An image model → one file; a video model → its key-frame graph at `path` and the warped-frame graph beside
    it (`export.onnx_video`)."""
    if source.module.config.video:
        from .onnx_video import export_video_onnx

        export = functools.partial(export_video_onnx, carry_protos=carry_protos or None)  # None: as its config says
    else:
        from .onnx import export_onnx as export

    info = stages.run("export ONNX", export, source.module, path, progress=progress)
    return ExportResult(
        format="onnx", precision="fp32", path=path, input_size=source.input_size, size_bytes=path.stat().st_size,
        inputs=info["inputs"], outputs=info["outputs"], output_order=[o["name"] for o in info["outputs"]],
        stage_times=stages.times, onnx_check=info["check"], warped_path=info.get("warped_path"),
    )


def _stage_count(format: str, precision: str, target: str | None, verify: bool, model: Any) -> int:
    if format == "onnx":
        return 2
    is_onnx = isinstance(model, (str, os.PathLike)) and str(model).lower().endswith(".onnx")
    count = 1 + (0 if is_onnx else 1) + 2  # load, ONNX export, onnx2tf, TFLite convert
    count += precision in ("int8", "int16x8")  # calibration images
    count += bool(verify) + (target == "imx93")
    return count


def export_tflite(
    source,
    path: Path,
    *,
    precision: str = "int8",
    calib=None,
    calib_count: int = 100,
    calib_seed: int = DEFAULT_CALIB_SEED,
    target: str | None = None,
    verify: bool = True,
    verify_count: int | None = None,
    progress: bool = True,
    stages: Stages | None = None,
    equalise: bool = True,
) -> ExportResult:
    """A resolved ModelSource → TFLite file at `path` (atomic), plus `<stem>.verify.json` when `verify`."""
    from .onnx2tf_step import release_tf
    from .tflite_file import embed_metadata

    stages = stages or Stages(total=6, verbose=progress)
    verify_count = verify_count or (2 if precision == "int16x8" else 4)  # int16x8 runs on reference kernels
    result_warnings: list[str] = []
    calib_images, calib_info = None, None
    with tempfile.TemporaryDirectory(prefix="yolactedge-export-") as tmp:
        workdir = Path(tmp)
        if precision in ("int8", "int16x8"):
            calib_images, calib_info = _calibration_images(stages, calib, calib_count, calib_seed,
                                                           source.input_size, progress, result_warnings)
        onnx_path, simplified, onnx_check, equalised = _onnx_source(stages, source, workdir, progress, target,
                                                                    result_warnings, calib_images, equalise)
        data, convert_info = _convert(stages, onnx_path, simplified, workdir, precision, calib_images, progress,
                                      float_ops_for(target, precision), float_box_decode(target, precision))
        release_tf()
        metadata = model_metadata(source.config, precision=precision, target=target)
        data = embed_metadata(data, metadata)
        info = checked_interface(data, precision, target, result_warnings)
        npu_data = None
        if precision == "int8" and target is not None and TARGET_GRAPHS[target].int16_box_tail:
            from .int16_tail import with_int16_box_tail

            npu_data = with_int16_box_tail(data, twin=False)
            data = with_int16_box_tail(data, twin=True)  # what LiteRT runs, to verify: the same values
        model_file = workdir / (path.stem.removesuffix("_vela") + ".tflite")
        model_file.write_bytes(data)
        verification = None
        if verify:
            held_out, description = held_out_images(
                calib, verify_count, calib_seed + VERIFY_SEED_OFFSET, source.input_size,
                calibration_files=(calib_info or {}).get("files", ()),
            )
            verification = stages.run("verify", _verify, model_file, onnx_path, held_out, description, precision,
                                      progress)
        vela, final = None, model_file
        if target == "imx93":
            if npu_data is not None:
                model_file.write_bytes(npu_data)
            vela, final, compiled_info = compile_for_npu(stages, model_file, workdir, metadata)
            vela["path"] = str(path)
            info = compiled_info | {"stray_ops": info["stray_ops"]}  # describe the file written: Vela's
        atomic_replace(final, path)
    verify_json = write_reports(path, source, precision, target, verification, vela, equalised)
    result = ExportResult(
        format="tflite", precision=precision, path=path, input_size=source.input_size, target=target,
        size_bytes=path.stat().st_size, inputs=info["inputs"], outputs=info["outputs"],
        output_order=info["output_order"], op_histogram=info["op_histogram"], stray_ops=info["stray_ops"],
        stage_times=stages.times, calibration=calibration_summary(calib_info, convert_info, equalised),
        verification=verification, verify_json=verify_json, vela=vela, warnings=result_warnings, onnx_check=onnx_check,
    )
    return result


def _calibration_images(stages: Stages, calib, count: int, seed: int, size: int, progress: bool,
                        result_warnings: list[str]):
    """The calibration set; its warnings (synthetic images, unreadable files) also go into the result."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images, info = stages.run("calibration images", calibration_dataset, calib, count, seed, size,
                                  progress=progress)
    for w in caught:
        warn(str(w.message), result_warnings, stacklevel=4)
    return images, info


def _onnx_source(stages: Stages, source, workdir: Path, progress: bool, target: str | None,
                 result_warnings: list[str], calib_images, equalise: bool = True):
    """→ (ONNX path, whether onnxsim already ran, the ONNX-vs-PyTorch check or None, the stream equalisation's
    report or None): the given ONNX file, or one exported from the checkpoint into `workdir` in the target's graph
    form (`TARGET_GRAPHS`), its MobileNetV2 streams equalised on the calibration images when there are some and
    `equalise` is on (`export.equalise`)."""
    from .equalise import export_streams, not_equalised
    from .onnx import export_onnx

    form = TARGET_GRAPHS.get(target)
    if source.onnx_path is not None:
        if form is not None and form.separable_upsampling:
            warn("an ONNX source keeps its FPN resizes, which Vela may leave on the CPU; export from the "
                  "checkpoint to place them on the NPU", result_warnings, stacklevel=4)
        report = not_equalised("an ONNX file as the source; export from the checkpoint to equalise its streams")
        return source.onnx_path, source.simplified, None, report if calib_images is not None else None
    onnx_path = workdir / "model.onnx"
    with export_streams(source.module, calib_images, equalise) as equalised:
        check = stages.run("export ONNX", export_onnx, source.module, onnx_path, check_count=1, progress=progress,
                           separable_upsampling=bool(form and form.separable_upsampling),
                           fold_input_std=bool(form and form.fold_input_std),
                           implicit_image_padding=bool(form and form.implicit_image_padding))["check"]
    return onnx_path, True, check, equalised


def _convert(stages: Stages, onnx_path: Path, simplified: bool, workdir: Path, precision: str, calib_images,
             progress: bool, float_ops: tuple[str, ...], float_decode: bool = False) -> tuple[bytes, dict]:
    """ONNX → Keras → TFLite bytes in the NXP output order (with `float_ops`, and the box decode when
    `float_decode`, left in float), and what the converter reported."""
    from .box_decode import box_decode_nodes
    from .converter import keras_to_tflite
    from .onnx2tf_step import onnx_to_keras

    keras_model = stages.run("ONNX → TensorFlow (onnx2tf)", onnx_to_keras, onnx_path, workdir, simplified=simplified)
    convert_info: dict = {}
    data = stages.run(f"TFLite {precision}", keras_to_tflite, keras_model, precision, calib_images,
                      progress=progress, info=convert_info, float_ops=float_ops,
                      float_nodes=box_decode_nodes if float_decode else None)
    return data, convert_info


def _verify(model_file: Path, onnx_path: Path, images, description: str, precision: str, progress: bool) -> dict:
    """The file, still under its temporary name, against the float ONNX; a failure leaves the output untouched."""
    from .verify import verify_tflite

    return verify_tflite(model_file, onnx_path, images, images_description=description, json_path=False,
                         print_table=progress, precision=precision)

