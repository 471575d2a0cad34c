"""What an exported model says about itself: the metadata the exporter embeds in ONNX and TFLite files.

The same facts go into both formats, so a model file copied alone still knows its class names and how to feed
it: ONNX keeps them as metadata properties (JSON text for lists and tables), TFLite as one `Model.metadata`
entry named `yolactedge` whose buffer is UTF-8 JSON. Reading a TFLite file needs only LiteRT's generated
flatbuffer schema (`ai_edge_litert`), never TensorFlow.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

METADATA_NAME = "yolactedge"
COLOUR_ORDER = "RGB"
INPUT_FORMAT = "RGB 0..255, resized to the input size without keeping the aspect; normalised inside the network"


class MetadataError(ValueError):
    """Embedded metadata that is present but unreadable; the message says why in one line."""


def model_metadata(config, *, precision: str, target: str | None = None) -> dict:
    """The facts a deployed model needs to be used without its checkpoint (JSON-serialisable)."""
    from . import __version__
    from .config import PIXEL_MEAN, PIXEL_STD, config_to_dict

    return {
        "yolactedge_version": __version__,
        "preset": config.name,
        "input_size": int(config.input_size),
        "input_format": INPUT_FORMAT,
        "colour_order": COLOUR_ORDER,
        "normalisation": {"mean": list(PIXEL_MEAN), "std": list(PIXEL_STD), "applied": "inside the network"},
        "class_names": list(config.class_names),
        "num_classes": int(config.num_classes),
        "config": config_to_dict(config),
        "precision": precision,
        "target": target,
    }


def onnx_properties(metadata: dict) -> dict[str, str]:
    """ONNX metadata properties are strings: text stays as it is, everything else becomes JSON; None is left out."""
    return {key: value if isinstance(value, str) else json.dumps(value)
            for key, value in metadata.items() if value is not None}


def read_tflite_metadata(model: str | os.PathLike | bytes) -> dict | None:
    """The `yolactedge` metadata entry of a TFLite file (path or bytes), or None when it has none (or when no
    flatbuffer schema is installed, e.g. a device with tflite_runtime only). Unreadable JSON is a MetadataError."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        return None
    data = bytes(model) if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
    try:
        root = schema.Model.GetRootAs(data, 0)
        entries = [root.Metadata(i) for i in range(root.MetadataLength())]
        entry = next((e for e in entries if e.Name() == METADATA_NAME.encode()), None)
        if entry is None:
            return None
        payload = _buffer_bytes(data, root.Buffers(entry.Buffer()))
        metadata = json.loads(payload.decode("utf-8"))
    except (ValueError, IndexError, TypeError, AttributeError, struct.error) as exc:  # malformed flatbuffer or JSON
        raise MetadataError(f"unreadable {METADATA_NAME} metadata ({exc})") from None
    if not isinstance(metadata, dict):
        raise MetadataError(f"unreadable {METADATA_NAME} metadata (not a JSON object)")
    return metadata


def _buffer_bytes(data: bytes, buffer) -> bytes:
    """A buffer's bytes: inline, or (models over 2 GB) at an offset from the start of the file."""
    if buffer.Offset() > 1:
        return data[buffer.Offset():buffer.Offset() + buffer.Size()]
    return buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b""
