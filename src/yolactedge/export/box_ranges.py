"""Calibration ranges of the box decode: the image for the boxes, and for int16x8 what the regressions allow.

The decode (per pyramid level, see `model.yolact.decode_boxes`) is elementwise arithmetic on the box regressions
and constants. Min/max calibration gives each intermediate the extremes the calibration images happened to reach
on it: a sum such as shift + half size sees its two terms' extremes rarely at the same anchor, so a held-out box
with a larger regression can saturate there (the demo at 320, int16x8, a P5 box: 0.020 off). `propagate`
derives the ranges inside the decode from the regressions' calibrated ranges by interval arithmetic instead, so
nothing the regressions can hold saturates inside the decode. int16x8 has the resolution to spare and takes it;
int8 keeps the calibrated extremes, whose finer steps are worth more than the rare saturation (demo, all 500
held-out images: box AP 0.6028 against 0.6013 propagated; `benchmarks/int8_accuracy.py`).
"""
from __future__ import annotations

import numpy as np

from ..opprofile import op_type_name

BOXES_RANGE = (0.0, 1.0)  # the calibration range given to the decoded boxes: the image (see fastcalib)
PASS_THROUGH = ("RESHAPE", "STRIDED_SLICE")


def box_ranges(model, stats: dict[int, tuple[float, float]], boxes: int | None, *,
               propagate: bool = False) -> dict[int, tuple[float, float]]:
    """`stats` ({tensor: (min, max)} of a float ModelT) with the boxes output and each level's boxes set to
    BOXES_RANGE and, with `propagate`, the decode's intermediates (the tensors that feed only the boxes) set by
    interval arithmetic from their inputs' ranges."""
    if boxes is None or boxes not in stats:
        return stats
    stats = dict(stats)
    subgraph = model.subgraphs[0]
    only_boxes = _feeding_only(subgraph, boxes) if propagate else set()
    for op in subgraph.operators:
        out = int(op.outputs[0])
        if out not in only_boxes or out not in stats or out == boxes:
            continue
        op_type = op_type_name(model, op)
        inputs = [_range(model, subgraph, int(i), stats) for i in op.inputs]
        inputs = inputs[:1] if op_type in PASS_THROUGH else inputs  # not their int32 shape operands
        if any(r is None for r in inputs):
            continue
        derived = _interval(op_type, inputs)
        if derived is not None:
            stats[out] = derived
    for index in _level_boxes(model, boxes):
        if index in stats:
            stats[index] = BOXES_RANGE
    return stats


def _interval(op_type: str, inputs: list) -> tuple[float, float] | None:
    """The range of an operator's output from its inputs' (each a (lo, hi) or a constant array)."""
    bounds = [(float(r.min()), float(r.max())) if isinstance(r, np.ndarray) else r for r in inputs]
    if op_type in PASS_THROUGH:
        return bounds[0]
    if op_type == "CONCATENATION":
        return min(b[0] for b in bounds), max(b[1] for b in bounds)
    if op_type == "EXP":
        return float(np.exp(bounds[0][0])), float(np.exp(bounds[0][1]))
    if len(bounds) != 2:
        return None
    (a, b), (c, d) = bounds
    if op_type == "ADD":
        return a + c, b + d
    if op_type == "SUB":
        return a - d, b - c
    if op_type == "MUL":
        products = (a * c, a * d, b * c, b * d)
        return min(products), max(products)
    return None


def _range(model, subgraph, index: int, stats):
    """A constant input's values, a variable input's (lo, hi), or None when it has no range."""
    tensor = subgraph.tensors[index]
    data = model.buffers[tensor.buffer].data if 0 < tensor.buffer < len(model.buffers) else None
    if data is not None and len(data):
        return np.asarray(data, np.uint8).view(np.float32) if tensor.type == 0 else None
    return stats.get(index)


def _feeding_only(subgraph, boxes: int) -> set[int]:
    """The tensors whose every use leads only to `boxes` (and `boxes` itself)."""
    consumers: dict[int, list] = {}
    for op in subgraph.operators:
        for i in op.inputs:
            consumers.setdefault(int(i), []).append(op)
    outputs = {int(i) for i in subgraph.outputs}
    only = {boxes}
    for op in reversed(subgraph.operators):  # operators are in topological order
        for i in (int(i) for i in op.outputs):
            uses = consumers.get(i, [])
            if i not in outputs and uses and all(int(u.outputs[0]) in only for u in uses):
                only.add(i)
    return only


def _level_boxes(model, boxes: int) -> list[int]:
    """The boxes output and, when a CONCATENATION of the pyramid levels' boxes writes it, each level's boxes:
    int8's concatenation shares one scale anyway, int16x8's requantizes each input."""
    for op in model.subgraphs[0].operators:
        if boxes in op.outputs and op_type_name(model, op) == "CONCATENATION":
            return [boxes, *(int(i) for i in op.inputs)]
    return [boxes]
