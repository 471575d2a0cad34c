"""PyTorch → ONNX: legacy TorchScript exporter (opset 17), onnxsim, metadata, checked with onnxruntime.

The file has input `input` float32 [1, 3, H, W] RGB 0..255 (normalisation is inside the graph) and outputs
`boxes` [1, A, 4], `scores` [1, C, A], `masks` [1, A, P], `proto` [1, Hp, Wp, P] (at 550 with 81 classes:
[1,19248,4], [1,80,19248], [1,19248,32], [1,138,138,32]). Metadata props carry the class names (JSON), the input
size, the preset name, the whole config (JSON) and the yolactedge version.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import fileio
from ..assets import is_shipped_name
from ..runtime.tensors import VIDEO_GRAPH_KEY, warped_memory_inputs
from .common import ONNX_OUTPUT_ORDER, ExportError, one_line, relative_error

OPSET = 17
ONNX_TOLERANCE = 1e-4  # max |ort - torch| / max |torch|, per output
CHECK_SEED = 20240617


@dataclass
class ModelSource:
    """A model to export: a PyTorch module, or an existing YOLACT-Edge ONNX file (TFLite export only)."""

    config: Any  # ModelConfig
    input_size: int
    module: Any = None  # YolactEdge in eval mode
    onnx_path: Path | None = None
    origin: str = ""
    simplified: bool = False  # the ONNX file already went through onnxsim (ours always do)


def resolve_model(model: Any, imgsz: int | None = None) -> ModelSource:
    """A `YolactEdge`, a checkpoint path, "demo" or a .onnx path → ModelSource at input size `imgsz`."""
    if imgsz is not None and (not isinstance(imgsz, int) or imgsz < 32):
        raise ExportError(f"--imgsz must be an integer of at least 32, got {imgsz!r}")
    from ..model.yolact import YolactEdge

    if isinstance(model, YolactEdge):
        module = with_input_size(model, imgsz)
        return ModelSource(module.config, module.config.input_size, module=module, origin=module.config.name)
    if not isinstance(model, (str, os.PathLike)):
        raise ExportError(f"cannot export a {type(model).__name__}: give a YolactEdge model, a checkpoint or an ONNX file")
    if not is_shipped_name(model) and not Path(model).is_file():
        raise ExportError(f"{model}: no such file")
    if str(model).lower().endswith(".onnx"):
        info = inspect_onnx(model)
        if info["video_graph"]:
            raise ExportError(f"{model} is the {info['video_graph']}-frame graph of a video model; TFLite export "
                              "starts from its checkpoint (which writes both TFLite files)")
        if imgsz is not None and imgsz != info["input_size"]:
            raise ExportError(
                f"{model}: the ONNX input is {info['input_size']}x{info['input_size']}; --imgsz {imgsz} needs the checkpoint"
            )
        return ModelSource(info["config"], info["input_size"], onnx_path=Path(model), origin=str(model),
                           simplified="yolactedge_version" in info["metadata"])
    from ..model.build import load_model

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "N keys unused" for video checkpoints: harmless for export
            module = load_model(model)
    except (ValueError, FileNotFoundError) as exc:  # CheckpointError is a ValueError
        raise ExportError(one_line(exc)) from None
    module = with_input_size(module, imgsz)
    return ModelSource(module.config, module.config.input_size, module=module, origin=str(model))


def with_input_size(module, size: int | None):
    """The same weights at another input size; anchor scales follow the size, as `build_model` does."""
    from ..model.yolact import YolactEdge

    config = module.config
    if size is None or size == config.input_size:
        return module.eval()
    try:
        new_config = config.at_input_size(size)
    except ValueError as exc:
        raise ExportError(one_line(exc)) from None
    resized = YolactEdge(new_config)
    resized.load_state_dict(module.state_dict())
    return resized.eval()


def check_images(size: int, count: int = 2, seed: int = CHECK_SEED) -> np.ndarray:
    """Real-looking test images (synthetic renders) as float32 NHWC 0..255."""
    from .calibration import synthetic_images

    return synthetic_images(count, seed, size, progress=False).astype(np.float32)


def export_onnx(
    model,
    output: str | os.PathLike,
    *,
    opset: int = OPSET,
    simplify: bool = True,
    check: bool = True,
    check_count: int = 2,
    tolerance: float = ONNX_TOLERANCE,
    progress: bool = True,
    separable_upsampling: bool = False,
    fold_input_std: bool = False,
    implicit_image_padding: bool = False,
) -> dict:
    """Write `model` (a YolactEdge) to `output` atomically; → {"inputs", "outputs", "check", "simplified"}.

    `separable_upsampling`: the FPN's non-2x bilinear upsamplings as fixed-weight convolutions (same values, see
    `model.upsample`), which Ethos-U NPUs run where they cannot run the resize.
    `fold_input_std`: the input normalisation's division by std folded into the first convolution's weights
    (same values, one elementwise op over the whole image less, see `graph_form`).
    `implicit_image_padding`: the first convolution pads by itself instead of through a PAD over the image (same
    values, see `graph_form`).

    The file appears only after onnxruntime reproduced PyTorch within `tolerance` (max abs error relative to each
    output's largest magnitude) on `check_count` synthetic images; otherwise ExportError and nothing is written.
    """
    model = model.eval()
    output = Path(output)
    images = check_images(model.config.input_size, max(1, check_count))
    example = torch_images(images[:1])
    with graph_form(model, separable_upsampling=separable_upsampling, fold_input_std=fold_input_std,
                    implicit_image_padding=implicit_image_padding):
        proto, simplified = trace_to_onnx(model, (example,), ["input"], list(ONNX_OUTPUT_ORDER), opset, simplify)
        set_metadata(proto, model.config)
        info, report = _write_checked(proto, output, model, images, check=check, tolerance=tolerance,
                                      progress=progress)
    return {"inputs": info["inputs"], "outputs": info["outputs"], "check": report, "simplified": simplified}


@contextlib.contextmanager
def graph_form(model, *, separable_upsampling: bool, fold_input_std: bool, implicit_image_padding: bool = False):
    """Trace (and check) the model in a target's graph form, then put it back as it was.

    fold_input_std: conv(W, pad0((x - mean) / std)) = conv(W / std, pad0(x - mean)), since zero padding commutes
    with a per-channel scale; the first 3-channel convolution takes the 1/std and the division (a MUL over the
    whole image in the int8 graph) disappears (onnxsim drops the division by one).
    implicit_image_padding: see `_same_padded_kernel`.
    """
    phase = model.fpn_phase_1
    before = phase.separable_upsampling
    phase.separable_upsampling = separable_upsampling
    conv = _image_conv(model) if fold_input_std or implicit_image_padding else None
    if conv is not None:
        weight, kernel_size, std = conv.weight, conv.kernel_size, model.pixel_std.clone()
        new_weight = weight.data.clone()
        if fold_input_std:
            new_weight /= std.view(1, -1, 1, 1)
            model.pixel_std.fill_(1.0)
        if implicit_image_padding:
            new_weight = _same_padded_kernel(conv, new_weight, model.config.input_size)
        conv.weight = type(weight)(new_weight, requires_grad=weight.requires_grad)
        conv.kernel_size = tuple(new_weight.shape[-2:])
    try:
        yield
    finally:
        phase.separable_upsampling = before
        if conv is not None:
            conv.weight, conv.kernel_size = weight, kernel_size
            model.pixel_std.copy_(std)


def _same_padded_kernel(conv, weight, input_size: int):
    """The first convolution's kernel grown by one zero row and column at its far end.

    A stride-2 convolution with an odd kernel k and padding (k-1)/2 on an even-sized image is TensorFlow's SAME
    convolution of that (k+1)-wide kernel: SAME pads (k-1)/2 on both sides for it, the zero taps read the extra
    pixel SAME brings, and the output size is the same. onnx2tf then writes one CONV_2D where it wrote a PAD over
    the whole image before it (1.9-7.5 ms of a MobileNetV2-550 int8 inference on XNNPACK, docs/export.md).
    Other shapes keep their kernel: the rewrite would change their values.
    """
    import torch.nn.functional as F

    k = conv.kernel_size[0]
    fits = (conv.kernel_size == (k, k) and k % 2 == 1 and conv.stride == (2, 2) and conv.padding == ((k - 1) // 2,) * 2
            and conv.dilation == (1, 1) and input_size % 2 == 0)
    return F.pad(weight, (0, 1, 0, 1)) if fits else weight


def _image_conv(model):
    """The backbone's convolution on the normalised image: the only one with 3 input channels."""
    import torch

    (conv,) = [m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels == 3]
    return conv


def torch_images(images: np.ndarray):
    """float32 NHWC images → the model's NCHW tensor."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32))


def trace_to_onnx(module, example: tuple, input_names: list[str], output_names: list[str], opset: int,
                  simplify: bool):
    """A module traced by the legacy TorchScript exporter, simplified by onnxsim → (ModelProto, simplified)."""
    import onnx
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's DeprecationWarning and tracer warnings
        try:
            torch.onnx.export(
                module, example, buffer, dynamo=False, opset_version=opset, input_names=input_names,
                output_names=output_names, do_constant_folding=True,
            )
        except Exception as exc:  # the tracer raises assorted types
            raise ExportError(f"ONNX export failed: {one_line(exc)}") from None
    proto = onnx.load_from_string(buffer.getvalue())
    return _simplify(proto) if simplify else (proto, False)


def _write_checked(proto, output: Path, model, images, *, check: bool, tolerance: float, progress: bool):
    """Write the ONNX through a temporary file beside `output`, check it against PyTorch, then rename it into
    place → (inspect_onnx's info, the check report or None). A failed check leaves `output` untouched."""
    tmp = write_temporary(proto, output)
    try:
        info = inspect_onnx(tmp, name=output.name)
        report = None
        if check:
            report = compare_with_torch(tmp, model, images)
            if progress:
                errors = ", ".join(f"{k} {v:.1e}" for k, v in report["relative_error"].items())
                print(f"  onnxruntime vs PyTorch, max relative error: {report['max_relative_error']:.2e} ({errors})")
            if not report["max_relative_error"] <= tolerance:
                raise ExportError(
                    f"ONNX check failed: onnxruntime differs from PyTorch by {report['max_relative_error']:.2e} "
                    f"(relative, limit {tolerance:.0e})"
                )
        os.replace(tmp, output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return info, report


def write_temporary(proto, output: Path) -> Path:
    """The model written (and synced) to a hidden temporary file beside `output`, to be renamed into place."""
    return fileio.write_temporary(output, lambda f: f.write(proto.SerializeToString()))


def _simplify(proto):
    try:
        import onnxsim

        simplified, ok = onnxsim.simplify(proto)
    except Exception as exc:  # onnxsim failing is not fatal: the unsimplified graph is valid
        warnings.warn(f"onnxsim failed ({one_line(exc)}); keeping the unsimplified graph", stacklevel=3)
        return proto, False
    if not ok:
        warnings.warn("onnxsim could not validate the simplified graph; keeping the unsimplified one", stacklevel=3)
        return proto, False
    return simplified, True


def set_metadata(proto, config, **extra: str) -> None:
    """The facts every exported file carries (`yolactedge.modelmeta`), plus `extra`, as ONNX metadata properties."""
    import onnx

    from .. import __version__
    from ..modelmeta import model_metadata, onnx_properties

    onnx.helper.set_model_props(proto, onnx_properties(model_metadata(config, precision="fp32")) | extra)
    proto.producer_name = "yolactedge"
    proto.producer_version = __version__


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def inspect_onnx(path: str | os.PathLike, *, name: str | None = None) -> dict:
    """Check that a file is a YOLACT-Edge ONNX model; → inputs, outputs, input_size, config, metadata.

    Raises ExportError (one line) for anything else: unreadable files and other networks.
    """
    import onnx

    label = name or str(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ExportError(f"{label}: not a readable ONNX file ({one_line(exc)[:120]})") from None
    graph = proto.graph
    initializers = {i.name for i in graph.initializer}
    metadata = {p.key: p.value for p in proto.metadata_props}
    video_graph = metadata.get(VIDEO_GRAPH_KEY)
    memory = set(warped_memory_inputs(True)) if video_graph in ("key", "warped") else set()  # a pair's extra tensors
    inputs = [_value_info(v) for v in graph.input if v.name not in initializers | memory]
    outputs = [_value_info(v) for v in graph.output if v.name not in memory]
    names = [o["name"] for o in outputs]
    if sorted(names) != sorted(ONNX_OUTPUT_ORDER) or len(inputs) != 1:
        raise ExportError(
            f"{label}: not a YOLACT-Edge ONNX model (inputs {[i['name'] for i in inputs]}, outputs {names}; "
            f"expected one input and outputs {', '.join(ONNX_OUTPUT_ORDER)})"
        )
    shape = inputs[0]["shape"]
    by_name = {o["name"]: o["shape"] for o in outputs}
    if not (len(shape) == 4 and shape[:2] == [1, 3] and shape[2] == shape[3] and isinstance(shape[2], int)):
        raise ExportError(f"{label}: input must be [1, 3, S, S] with a fixed size S, got {shape}")
    size = shape[2]
    try:
        _, anchors, four = by_name["boxes"]
        _, classes, anchors2 = by_name["scores"]
        _, anchors3, mask_dim = by_name["masks"]
        _, hp, wp, mask_dim2 = by_name["proto"]
    except ValueError:
        raise ExportError(f"{label}: output ranks do not fit YOLACT-Edge ({by_name})") from None
    if four != 4 or anchors != anchors2 or anchors != anchors3 or mask_dim != mask_dim2:
        raise ExportError(f"{label}: output shapes do not fit YOLACT-Edge ({by_name})")
    config = _config_from(metadata, size, classes + 1, mask_dim)
    return {"inputs": inputs, "outputs": [dict(o) for o in outputs], "input_size": size, "config": config,
            "metadata": metadata, "video_graph": video_graph, "opset": max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)}


def _config_from(metadata: dict, size: int, num_classes: int, mask_dim: int):
    """The model's config from our metadata, else rebuilt from the shapes (class names unknown)."""
    from ..config import get_preset
    from ..model.checkpoint import config_from_dict

    if "config" in metadata:
        try:
            config = config_from_dict(json.loads(metadata["config"]))
            if config.input_size == size and config.num_classes == num_classes:
                return config
        except (ValueError, TypeError):
            pass
    names = tuple(f"class{i}" for i in range(num_classes - 1))
    if "class_names" in metadata:
        try:
            loaded = tuple(json.loads(metadata["class_names"]))
            names = loaded if len(loaded) == num_classes - 1 else names
        except ValueError:
            pass
    return get_preset("yolact_edge_mobilenetv2").at_input_size(size).replace(
        name=metadata.get("preset", "onnx_model"), num_classes=num_classes, class_names=names, mask_dim=mask_dim,
    )


def _value_info(v) -> dict:
    import onnx

    t = v.type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
    return {"name": v.name, "shape": shape, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name}


def ort_session(path: str | os.PathLike, threads: int = 2):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session_or_path, images: np.ndarray) -> list[dict[str, np.ndarray]]:
    """images float32 NHWC 0..255 → per image {output name: array with batch axis}."""
    session = session_or_path if hasattr(session_or_path, "run") else ort_session(session_or_path)
    names = [o.name for o in session.get_outputs()]
    results = []
    for image in images:
        x = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
        results.append(dict(zip(names, session.run(names, {"input": x}))))
    return results


def run_torch(model, images: np.ndarray) -> list[dict[str, np.ndarray]]:
    import torch

    results = []
    with torch.no_grad():
        for image in images:
            x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32))
            results.append({n: t.numpy() for n, t in zip(ONNX_OUTPUT_ORDER, model.eval()(x))})
    return results


def compare_with_torch(onnx_path, model, images: np.ndarray) -> dict:
    """Max abs error per output relative to the output's largest magnitude, over `images`."""
    ours, reference = run_onnx(onnx_path, images), run_torch(model, images)
    relative = {}
    for name in ONNX_OUTPUT_ORDER:
        worst = 0.0
        for a, b in zip(ours, reference):
            if a[name].shape != b[name].shape:
                raise ExportError(f"ONNX check failed: {name} has shape {list(a[name].shape)}, PyTorch {list(b[name].shape)}")
            worst = max(worst, relative_error(a[name], b[name]))
        relative[name] = worst
    return {"images": len(images), "relative_error": relative, "max_relative_error": max(relative.values())}
