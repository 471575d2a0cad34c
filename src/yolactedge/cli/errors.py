"""What the CLI turns into one-line errors: bad arguments, and optional packages that are not installed."""
from __future__ import annotations


class UsageError(ValueError):
    """Bad arguments the parser itself cannot catch."""


# The extra that installs each optional package, for the one-line error of a verb run without it.
EXTRA_OF_PACKAGE = {
    "torch": "torch", "onnx": "onnx", "onnxruntime": "onnx", "onnxsim": "convert", "onnx2tf": "convert",
    "tensorflow": "convert", "tf_keras": "convert", "ethosu": "convert", "ai_edge_litert": "litert",
    "tflite_runtime": "litert", "pycocotools": "eval", "matplotlib": "eval", "trackeval": "eval",
}


def missing_extra_message(exc: ModuleNotFoundError) -> str | None:
    """'this command needs X: pip install "yolactedge[extra]"' for a package one of our extras installs."""
    package = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_PACKAGE.get(package)
    return f"this command needs {package}: pip install \"yolactedge[{extra}]\"" if extra else None
