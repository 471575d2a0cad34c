"""A video model → two TFLite files, YOLACT-Edge's key frame and warped frame, calibrated and verified together.

    <stem>.tflite       input → boxes, scores, proto, masks, then the memory (key_p4, key_p5, key_flow_features)
    <stem>_warp.tflite  input + the memory → boxes, scores, proto, masks

The key-frame file's first four outputs are an image model's file's, in the same index order, so it also runs
wherever an image model does. Both come from the ONNX pair (`onnx_video`) through onnx2tf, whose GridSample
becomes GATHER ops. onnx2tf hands each tensor over in a layout of its own choosing (NCHW or NHWC, per tensor):
the key-frame file outputs every memory tensor in the layout the warped-frame file takes it in, so the runtime
passes them over untouched. int8: both files take an int8 image (scale 1, zero point -128) and return float32;
the warped file's memory inputs are int8 too (the converter sets one type for every input), which the runtime
quantizes once per key frame instead of a QUANTIZE per input in every warped frame. Calibration runs on
consecutive frames (`calibration.calibration_frames`): the key-frame graph on every frame, the warped-frame
graph on each frame but a group's first with the memory the float (ONNX) key frame left on an earlier frame.
Before the ONNX export of an int8 pair, the backbone's residual streams are equalised on those frames, as for an
image model's file (`equalise`; the warped frame's float outputs are checked unchanged too).
fp32 and fp16 (float16 weights) pairs take and return float32. int16x8 is not supported yet.
"""
from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import numpy as np

from ..modelmeta import model_metadata
from ..runtime.tensors import VIDEO_GRAPH_KEY, warped_graph_path, warped_input_source
from .calibration import VIDEO_GROUP, calibration_frames, held_out_frames
from .common import (
    TARGET_GRAPHS, TFLITE_OUTPUT_ORDER, ExportError, ExportResult, Stages, atomic_replace, relative_error,
)
from .converter import GraphInput
from .onnx2tf_step import KERAS_TOLERANCE
from .verify import verify_pair

VIDEO_PRECISIONS = ("fp32", "fp16", "int8")
NHWC = (0, 2, 3, 1)  # from an ONNX (NCHW) tensor to onnx2tf's channels-last one


def export_video_tflite(source, path: Path, *, precision: str, calib, calib_count: int, calib_seed: int,
                        target: str | None, verify: bool, verify_count: int | None, progress: bool,
                        stages: Stages, equalise: bool = True) -> ExportResult:
    """The pair at `path` and its `_warp` partner (both atomic, both or neither), with `<stem>.json` and, when
    verified, `<stem>.verify.json` (the key-frame report, the warped-frame one under "warped")."""
    from .equalise import export_streams
    from .onnx import graph_form
    from .onnx2tf_step import release_tf
    from .onnx_video import export_video_onnx
    from .tflite_finish import (
        calibration_summary, checked_interface, compile_for_npu, float_box_decode, float_ops_for, write_reports,
    )
    from .tflite_file import embed_metadata

    if precision not in VIDEO_PRECISIONS:
        raise ExportError(f"a video model exports as {', '.join(VIDEO_PRECISIONS)}; --precision {precision} is for "
                          "image models")
    partner = warped_graph_path(path)
    if partner.exists() and not partner.is_file():
        raise ExportError(f"cannot write {partner}: it exists and is not a file")
    model, form = source.module, TARGET_GRAPHS.get(target)
    stages.total += target == "imx93"  # Vela compiles both files
    float_ops = float_ops_for(target, precision)
    result_warnings: list[str] = []
    calib_info = None
    with tempfile.TemporaryDirectory(prefix="yolactedge-export-") as tmp:
        workdir = Path(tmp)
        frames = None
        if precision == "int8":
            frames, calib_info = _frames(stages, calib, calib_count, calib_seed, source.input_size, progress,
                                         result_warnings)
        key_onnx = workdir / "model.onnx"
        with export_streams(model, frames, equalise) as equalised, graph_form(
                model, separable_upsampling=bool(form and form.separable_upsampling),
                fold_input_std=bool(form and form.fold_input_std)):
            onnx_info = stages.run("export ONNX", export_video_onnx, model, key_onnx, progress=progress)
        warped_onnx = onnx_info["warped_path"]
        pair = stages.run("ONNX → TensorFlow (onnx2tf)", pair_to_keras, key_onnx, warped_onnx, workdir)
        key_data, warped_data, convert_info = stages.run(
            f"TFLite {precision}", convert_pair, pair, key_onnx, precision, frames, progress, float_ops,
            float_box_decode(target, precision))
        memory = pair.memory
        del pair
        release_tf()
        # One id in both files: the runtime refuses a partner from another export.
        metadata = model_metadata(source.config, precision=precision, target=target) | {
            "video_pair": uuid.uuid4().hex}
        key_data = embed_metadata(key_data, metadata | {VIDEO_GRAPH_KEY: "key"})
        warped_data = embed_metadata(warped_data, metadata | {VIDEO_GRAPH_KEY: "warped"})
        info = checked_interface(key_data, precision, target, result_warnings, extra_outputs=memory)
        warped_info = checked_interface(warped_data, precision, target, result_warnings, graph="warped")
        stem = path.stem.removesuffix("_vela")
        key_file, warped_file = workdir / f"{stem}.tflite", warped_graph_path(workdir / f"{stem}.tflite")
        key_file.write_bytes(key_data)
        warped_file.write_bytes(warped_data)
        verification = None
        if verify:
            start = (calib_info or {}).get("next", 0)
            count = verify_count or VIDEO_GROUP
            held_out, description = held_out_frames(calib, count, calib_seed + 1, source.input_size, start=start)
            verification = stages.run("verify", verify_pair, key_file, key_onnx, held_out, description, precision,
                                      progress)
        vela, finals = None, (key_file, warped_file)
        if target == "imx93":
            vela, key_final, compiled_info = compile_for_npu(stages, key_file, workdir, metadata | {
                VIDEO_GRAPH_KEY: "key"}, order=(*TFLITE_OUTPUT_ORDER, *memory))
            warped_vela, warped_final, _ = compile_for_npu(stages, warped_file, workdir / "warped", metadata | {
                VIDEO_GRAPH_KEY: "warped"})
            vela["path"], vela["warped"] = str(path), warped_vela | {"path": str(partner)}
            finals = (key_final, warped_final)
            info = compiled_info | {"stray_ops": info["stray_ops"]}
        atomic_replace(finals[1], partner)
        atomic_replace(finals[0], path)
    verify_json = write_reports(path, source, precision, target, verification, vela, equalised)
    return ExportResult(
        format="tflite", precision=precision, path=path, input_size=source.input_size, target=target,
        size_bytes=path.stat().st_size, inputs=info["inputs"], outputs=info["outputs"],
        output_order=info["output_order"], op_histogram=info["op_histogram"], stray_ops=info["stray_ops"],
        stage_times=stages.times, calibration=calibration_summary(calib_info, convert_info, equalised),
        verification=verification, verify_json=verify_json, vela=vela, warnings=result_warnings,
        onnx_check=onnx_info["check"],
        warped_path=partner, warped_op_histogram=warped_info["op_histogram"],
        warped_float_ops=_float_summary(warped_info["stray_ops"]),
    )


def _float_summary(stray: list[str]) -> list[str]:
    """The warped file's float ops as "FLOOR 4"-style counts (QUANTIZE/DEQUANTIZE at the island's borders)."""
    from collections import Counter

    counts = Counter(item.split(" ")[0] for item in stray)
    return [f"{name} {count}" for name, count in sorted(counts.items())]


def _frames(stages: Stages, calib, count: int, seed: int, size: int, progress: bool, result_warnings: list[str]):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames, info = stages.run("calibration frames", calibration_frames, calib, count, seed, size,
                                  progress=progress)
    for w in caught:
        warnings.warn(str(w.message), stacklevel=4)
        result_warnings.append(str(w.message))
    return frames, info


# --- ONNX → Keras, with each tensor's layout ------------------------------------------------------------------------

class KerasPair:
    """onnx2tf's Keras models of both graphs and the layout of every tensor handed between them: `key_layouts`
    {key output: NHWC or None} (None: as in ONNX), `warped_layouts` {warped input: the same}."""

    def __init__(self, key, warped, key_layouts: dict, warped_layouts: dict, memory: list[str]) -> None:
        self.key, self.warped, self.key_layouts, self.warped_layouts, self.memory = (
            key, warped, key_layouts, warped_layouts, memory)

    def file_layout(self, key_output: str) -> tuple[int, ...] | None:
        """The key-frame file's layout of an output: NHWC for the memory, as in ONNX for the four outputs."""
        return NHWC if key_output in self.memory else None

    def graph_inputs(self, warped_shapes: dict[str, tuple[int, ...]]) -> list[GraphInput]:
        """The warped-frame file's inputs: each memory tensor in the layout the key-frame file outputs it in."""
        inputs = []
        for name in self.warped.input_names:
            onnx_shape = warped_shapes[name]
            if name == self.warped.input_names[0]:
                inputs.append(GraphInput("input", tuple(self.warped.inputs[0].shape)))
                continue
            file_perm = self.file_layout(warped_input_source(name))
            inputs.append(GraphInput(name, _permuted(onnx_shape, file_perm),
                                     _between(file_perm, self.warped_layouts[name])))
        return inputs


def pair_to_keras(key_onnx: Path, warped_onnx: Path, workdir: Path) -> KerasPair:
    """Both graphs through onnx2tf (fast mode, strict when fast misses KERAS_TOLERANCE), each checked against
    onnxruntime on a key frame and the next frame warped from its memory."""
    from .onnx import check_images, ort_session

    images = check_images(int(_onnx_shapes(key_onnx, inputs=True)["input"][2]), 2)
    key_session, warped_session = ort_session(key_onnx), ort_session(warped_onnx)
    key_names = [o.name for o in key_session.get_outputs()]
    key_ref = dict(zip(key_names, key_session.run(key_names, {"input": _nchw(images[0])})))
    memory = key_names[len(TFLITE_OUTPUT_ORDER):]
    warped_inputs = [i.name for i in warped_session.get_inputs()]
    warped_feed = {"input": _nchw(images[1])} | {n: key_ref[warped_input_source(n)] for n in warped_inputs[1:]}
    warped_names = [o.name for o in warped_session.get_outputs()]
    warped_ref = dict(zip(warped_names, warped_session.run(warped_names, warped_feed)))

    key_model, key_layouts = _checked_keras(key_onnx, workdir / "key", {"input": _nchw(images[0])}, key_ref)
    warped_model, warped_layouts = _checked_keras(warped_onnx, workdir / "warped", warped_feed, warped_ref)
    return KerasPair(key_model, warped_model, key_layouts, warped_layouts, memory)


def _checked_keras(onnx_path: Path, workdir: Path, feeds: dict[str, np.ndarray], reference: dict[str, np.ndarray]):
    """→ (Keras model, {input or output name: NHWC or None}) within KERAS_TOLERANCE of onnxruntime."""
    from .onnx2tf_step import _onnx2tf, release_tf

    workdir.mkdir()
    for strict in (False, True):
        model = _onnx2tf(onnx_path, workdir, simplified=True, strict=strict)
        layouts = {name: _input_layout(feeds[name].shape, tuple(tensor.shape))
                   for name, tensor in zip(model.input_names, model.inputs)}
        args = [_permuted_array(feeds[name], layouts[name]) for name in model.input_names]
        outputs = model(args if len(args) > 1 else args[0], training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        worst = 0.0
        for name, tensor in zip(model.output_names, outputs):
            layout, error = _output_layout(np.asarray(tensor), reference[name])
            layouts[name] = layout
            worst = max(worst, error)
        if worst <= KERAS_TOLERANCE:
            return model, layouts
        del model
        release_tf()
    raise ExportError(f"onnx2tf's TensorFlow model of {onnx_path.name} differs from ONNX by {worst:.2e} (relative); "
                      "cannot convert")


def _input_layout(onnx_shape: tuple, keras_shape: tuple) -> tuple[int, ...] | None:
    """onnx2tf makes a 4-D input channels-last (where the shape cannot tell, it did)."""
    if len(onnx_shape) == 4 and _permuted(onnx_shape, NHWC) == tuple(keras_shape):
        return NHWC
    if tuple(onnx_shape) == tuple(keras_shape):
        return None
    raise ExportError(f"onnx2tf changed an input's shape {list(onnx_shape)} to {list(keras_shape)}; cannot convert")


def _output_layout(ours: np.ndarray, reference: np.ndarray) -> tuple[tuple[int, ...] | None, float]:
    """→ (the layout in which `ours` holds `reference`, the relative error there); by value, so a shape that
    reads the same in both layouts is not mistaken."""
    candidates = [None] + ([NHWC] if reference.ndim == 4 else [])
    errors = {}
    for layout in candidates:
        expected = _permuted_array(reference, layout)
        if expected.shape == ours.shape:
            errors[layout] = relative_error(ours, expected)
    if not errors:
        return None, float("inf")
    best = min(errors, key=errors.get)
    return best, errors[best]


def _permuted(shape, perm) -> tuple[int, ...]:
    return tuple(int(shape[i]) for i in perm) if perm else tuple(int(d) for d in shape)


def _permuted_array(array: np.ndarray, perm) -> np.ndarray:
    return np.ascontiguousarray(array.transpose(perm)) if perm else array


def _between(source: tuple[int, ...] | None, target: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """The permutation taking a tensor from layout `source` to layout `target` (both relative to ONNX's)."""
    if source == target:
        return None
    inverse = np.argsort(source) if source else np.arange(4)
    return tuple(int(inverse[i]) for i in (target or range(4)))


def _nchw(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], np.float32)


def _onnx_shapes(path: Path, *, inputs: bool) -> dict[str, tuple[int, ...]]:
    """{name: shape} of an ONNX graph's inputs (or outputs), memory tensors included."""
    from .onnx import ort_session

    session = ort_session(path, threads=1)
    return {v.name: tuple(v.shape) for v in (session.get_inputs() if inputs else session.get_outputs())}


# --- Keras → TFLite ------------------------------------------------------------------------------------------------

def convert_pair(pair: KerasPair, key_onnx: Path, precision: str, frames: np.ndarray | None, progress: bool,
                 float_ops: tuple[str, ...], float_decode: bool = False) -> tuple[bytes, bytes, dict]:
    """→ (key-frame bytes, warped-frame bytes, what the converter reported of the calibration). `float_decode`:
    both files decode their boxes in float (`box_decode`)."""
    from .box_decode import box_decode_nodes
    from .converter import keras_to_tflite
    from .sampling_grid import sampling_grid_nodes

    def warped_float_nodes(data: bytes) -> list[str]:
        return sampling_grid_nodes(data) + (box_decode_nodes(data) if float_decode else [])

    warped_onnx = warped_graph_path(key_onnx)
    warped_inputs = pair.graph_inputs(_onnx_shapes(warped_onnx, inputs=True))
    key_perms = {name: _between(pair.key_layouts[name], pair.file_layout(name)) for name in pair.key.output_names}
    key_calib = warped_calib = None
    if frames is not None:
        key_calib, warped_calib = calibration_samples(pair, key_onnx, frames, warped_inputs)
    info: dict = {}
    key_data = keras_to_tflite(pair.key, precision, key_calib, progress=progress, info=info, float_ops=float_ops,
                               float_nodes=box_decode_nodes if float_decode else None,
                               output_perms={k: v for k, v in key_perms.items() if v},
                               output_order=(*TFLITE_OUTPUT_ORDER, *pair.memory))
    warped_info: dict = {}
    warped_data = keras_to_tflite(pair.warped, precision, warped_calib, progress=progress, info=warped_info,
                                  float_ops=float_ops, float_nodes=warped_float_nodes, inputs=warped_inputs)
    if "calibration_s" in warped_info:
        info["calibration_s"] = round(info.get("calibration_s", 0.0) + warped_info["calibration_s"], 3)
    return key_data, warped_data, info


def calibration_samples(pair: KerasPair, key_onnx: Path, frames: np.ndarray, warped_inputs: list[GraphInput]):
    """The key-frame graph's calibration images (every frame) and the warped-frame graph's samples: each frame
    that is not a group's first (VIDEO_GROUP), with the memory the float key frame left on an earlier frame of its
    group, the distance cycling over the groups (1 to 4 frames back), so that the memory's ranges come from most
    frames, not from the groups' first ones alone."""
    from .onnx import ort_session

    session = ort_session(key_onnx)
    names = [o.name for o in session.get_outputs()]
    memory: dict[int, dict[str, np.ndarray]] = {}

    def memory_of(index: int) -> dict[str, np.ndarray]:
        if index not in memory:
            outputs = dict(zip(names, session.run(names, {"input": _nchw(frames[index])})))
            memory[index] = {i.name: _permuted_array(outputs[warped_input_source(i.name)],
                                                     pair.file_layout(warped_input_source(i.name)))
                             for i in warped_inputs[1:]}
        return memory[index]

    warped = []
    for index, frame in enumerate(frames):
        group, position = divmod(index, VIDEO_GROUP)
        if position == 0:
            continue
        key = group * VIDEO_GROUP + group % position
        warped.append({"input": frame[None].astype(np.float32), **memory_of(key)})
    if not warped:
        raise ExportError("a video model calibrates on at least 2 consecutive frames")
    return frames, warped


