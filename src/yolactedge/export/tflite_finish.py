"""A converted TFLite file finished: its interface and ops checked, compiled by Vela for the i.MX 93, and the
reports written beside it. Shared by the image pipeline (`pipeline`) and the video pair's (`tflite_video`)."""
from __future__ import annotations

import warnings
from pathlib import Path

from .common import TARGET_GRAPHS, TFLITE_OUTPUT_ORDER, ExportError, Stages, write_json


def warn(message: str, result_warnings: list[str] | None = None, stacklevel: int = 3) -> None:
    warnings.warn(message, stacklevel=stacklevel)
    if result_warnings is not None:
        result_warnings.append(message)


def checked_interface(data: bytes, precision: str, target: str | None, result_warnings: list[str], *,
                       extra_outputs: list[str] = (), graph: str | None = None) -> dict:
    """The file's interface and ops, refusing a wrong output order or input type and warning on stray ops (those
    the target's graph has by design are not stray: its float ops, the Ethos-U upsampling's transposes).

    extra_outputs: a video model's key-frame memory, after the four outputs. graph "warped": a video model's
    warped-frame file, whose GridSample is GATHER ops and whose memory enters beside the image.
    """
    from .tflite_file import inspect_tflite

    separable = target is not None and TARGET_GRAPHS[target].separable_upsampling
    video = graph == "warped" or bool(extra_outputs)
    info = inspect_tflite(data, precision, float_ops=float_ops_for(target, precision),
                          transposes=-1 if separable or video else None, gathers=graph == "warped",
                          float_box_decode=float_box_decode(target, precision))
    expected = [*TFLITE_OUTPUT_ORDER, *extra_outputs]
    if info["output_order"] != expected:
        raise ExportError(f"TFLite output order is {info['output_order']}, expected {expected}")
    check_input(info["inputs"][0], precision, result_warnings)
    if graph == "warped":  # onnx2tf's GridSample computes its coordinates in float: reported, not warned
        return info
    for item in info["stray_ops"]:
        warn(f"stray op in the {precision} graph{f' ({graph} frame)' if graph else ''}: {item}", result_warnings,
              stacklevel=4)
    return info


def compile_for_npu(stages: Stages, model_file: Path, workdir: Path, metadata: dict,
                     order: tuple[str, ...] = TFLITE_OUTPUT_ORDER) -> tuple[dict, Path, dict]:
    """Vela's output for the Ethos-U65, with the output `order` and our metadata kept → (Vela's report, the
    file, its interface and ops as `inspect_tflite` lists them: the ethos-u custom op plus what stays on the
    CPU)."""
    from .tflite_file import embed_metadata, inspect_tflite, reorder_outputs, signature_outputs
    from .vela import npu_placement, run_vela

    vela = stages.run(f"Vela (Ethos-U65): {model_file.name}", run_vela, model_file, workdir / "vela")
    final = Path(vela["path"])
    compiled = final.read_bytes()
    if signature_outputs(compiled):  # Vela keeps the signature; make sure it kept the order too
        compiled = reorder_outputs(compiled, order)
    compiled = embed_metadata(compiled, metadata)
    final.write_bytes(compiled)
    compiled_info = inspect_tflite(compiled)
    vela["op_histogram"] = compiled_info["op_histogram"]
    vela["output_order"] = compiled_info["output_order"]
    vela["placement"] = npu_placement(compiled)
    return vela, final, compiled_info


def calibration_summary(info: dict | None, convert_info: dict, equalised: dict | None) -> dict | None:
    """The export result's calibration entry: what the calibration set was (without its file list and, for a
    video's frames, the index it stopped at), what the converter reported, what `equalise` did."""
    if info is None:
        return None
    streams = {} if equalised is None else {"equalised_streams": equalised}
    return {k: v for k, v in info.items() if k not in ("files", "next")} | convert_info | streams


def write_reports(path: Path, source, precision: str, target: str | None, verification: dict | None,
                   vela: dict | None, equalised: dict | None = None) -> Path | None:
    """The `<stem>.json` sidecar (with Vela's placement for imx93 and what `equalise` did before calibration)
    and, after a verification, `<stem>.verify.json` → the latter's path."""
    from ..config import config_to_dict

    # The runtime reads class names (and the source config) from this sidecar.
    sidecar = {"class_names": list(source.config.class_names), "config": config_to_dict(source.config),
               "source": source.origin, "precision": precision, "target": target}
    if equalised is not None:
        sidecar["equalised_streams"] = equalised
    if vela is not None:
        sidecar["vela"] = {k: vela[k] for k in ("accelerator", "version", "command", "summary", "placement")}
    write_json(path.with_suffix(".json"), sidecar)
    if verification is None:
        return None
    verification["model"] = path.name
    if target == "imx93":
        verification["note"] = ("verified the int8 model before Vela (Ethos-U operators do not run on a CPU), its "
                                "int16 box tail's int8 → int16 hand-overs as DEQUANTIZE + QUANTIZE, which LiteRT "
                                "runs (the same values)")
    verify_json = path.with_suffix(".verify.json")
    write_json(verify_json, verification)
    return verify_json


def check_input(detail: dict, precision: str, result_warnings: list[str]) -> None:
    expected = {"int8": "int8"}.get(precision, "float32")
    if detail["dtype"] != expected:
        raise ExportError(f"TFLite {precision} input is {detail['dtype']}, expected {expected}")
    if precision == "int8":
        scale, zero_point = detail.get("quantization", (0.0, 0))
        if abs(scale - 1.0) > 1e-5 or zero_point != -128:
            warn(f"int8 input quantisation is scale {scale:g}, zero point {zero_point} (expected 1, -128)",
                  result_warnings, stacklevel=5)


def float_ops_for(target: str | None, precision: str) -> tuple[str, ...]:
    """The operator types the target's int8 graph keeps in float (none for other precisions)."""
    return TARGET_GRAPHS[target].float_ops if target is not None and precision == "int8" else ()


def float_box_decode(target: str | None, precision: str) -> bool:
    """Whether the target's int8 graph decodes the boxes in float."""
    return target is not None and precision == "int8" and TARGET_GRAPHS[target].float_box_decode
