"""Keep TensorFlow's and the converter's own logging off the user's console (set YOLACTEDGE_DEBUG=1 to see it)."""
from __future__ import annotations

import contextlib
import os
import sys
import warnings


def debugging() -> bool:
    """YOLACTEDGE_DEBUG=1 lets TensorFlow, absl, CUDA and onnx2tf print what they print."""
    return bool(os.environ.get("YOLACTEDGE_DEBUG"))


def import_tensorflow():
    """TensorFlow, imported without its console noise: the C++ log level is set before the import (CUDA factory
    registration and cuInit messages are errors to it), absl's stderr lines are held back around the import, and
    its Python loggers report errors only."""
    if not debugging():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if sys.modules.get("tensorflow") is not None:
        return sys.modules["tensorflow"]
    with quiet_fds(), warnings.catch_warnings():
        import tensorflow as tf
    if not debugging():
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
        tf.get_logger().setLevel("ERROR")
    return tf


def import_onnx2tf():
    """onnx2tf, imported quietly and without its side effect on warnings: its module turns every Python warning
    off for the whole process (`warnings.simplefilter("ignore", Warning)`), which would hide the exporter's own."""
    import_tensorflow()
    with quiet_fds(), warnings.catch_warnings():
        import onnx2tf
    return onnx2tf


@contextlib.contextmanager
def quiet_fds():
    """Silence the converter's C++ chatter on fds 1/2 ("fully_quantize: 0, ..."), unless debugging.

    Yields a text stream on the real stderr, for progress bars.
    """
    if debugging():
        yield sys.stderr
        return
    saved = []
    stream = None
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        stream = os.fdopen(os.dup(2), "w", buffering=1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            saved.append((fd, os.dup(fd)))
            os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError):  # no real fds (some test runners): nothing to silence
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        saved = []
        if stream is not None:
            stream.close()
        stream = None
    try:
        yield stream if stream is not None else sys.stderr
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        if stream is not None:
            stream.close()
