"""ONNX → Keras with onnx2tf, in memory and offline: the first TensorFlow form of the model.

onnx2tf's own outputs (SavedModel plus float .tflite files) are never used, so it runs with
`disable_model_save=True` and returns a Keras model. onnx2tf always loads
`calibration_image_sample_data_20x128x128x3_float32.npy` from the working directory and downloads it when
absent: the conversion runs in a temporary directory where that file is written first, so no network is touched.
"""
from __future__ import annotations

import contextlib
import gc
import io
import os
import warnings
from pathlib import Path

import numpy as np

from .common import ExportError, last_line, one_line, relative_error
from .quiet import import_onnx2tf, quiet_fds

SAMPLE_DATA_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


@contextlib.contextmanager
def working_directory(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


KERAS_TOLERANCE = 1e-4  # max |keras - onnxruntime| / max |onnxruntime|, per output


def onnx_to_keras(onnx_path: str | os.PathLike, workdir: str | os.PathLike, *, simplified: bool = False,
                  strict: bool | None = None):
    """onnx2tf in memory (`disable_model_save=True`) → tf_keras model with NHWC input, inside `workdir`.

    `simplified`: the ONNX already went through onnxsim (ours always does), so onnx2tf's own passes are skipped.
    `strict`: onnx2tf's strict mode (per-op accuracy correction: right but slow at 550). None tries the fast
    mode first and checks the Keras model against onnxruntime on one image, redoing it strictly on a mismatch.
    """
    if strict is None:
        model = _onnx2tf(onnx_path, workdir, simplified=simplified, strict=False)
        error = keras_vs_onnx(model, onnx_path)
        if error <= KERAS_TOLERANCE:
            return model
        del model
        release_tf()
        strict = True
    model = _onnx2tf(onnx_path, workdir, simplified=simplified, strict=strict)
    error = keras_vs_onnx(model, onnx_path)
    if not error <= KERAS_TOLERANCE:
        raise ExportError(f"onnx2tf's TensorFlow model differs from ONNX by {error:.2e} (relative); cannot convert")
    return model


def keras_vs_onnx(keras_model, onnx_path, image: np.ndarray | None = None) -> float:
    """Max over outputs of max |keras - onnxruntime| / max |onnxruntime| on one real-looking image."""
    from .onnx import check_images, run_onnx

    if image is None:
        image = check_images(int(keras_model.inputs[0].shape[1]), count=1)[0]
    reference = run_onnx(onnx_path, image[None])[0]
    outputs = keras_model(image[None].astype(np.float32), training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    worst = 0.0
    for name, tensor in zip(keras_model.output_names, outputs):
        ours, ref = np.asarray(tensor), reference.get(name)
        if ref is None or ours.shape != ref.shape:
            return float("inf")
        worst = max(worst, relative_error(ours, ref))
    return worst


def preempt_sample_download(workdir: Path) -> None:
    """onnx2tf downloads a calibration sample file unless one is in its working directory: write one."""
    sample = np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32)
    np.save(Path(workdir) / SAMPLE_DATA_FILE, sample)


def _onnx2tf(onnx_path, workdir, *, simplified: bool, strict: bool):
    onnx2tf = import_onnx2tf()

    workdir = Path(workdir).resolve()
    onnx_path = Path(onnx_path).resolve()
    preempt_sample_download(workdir)
    stdout = io.StringIO()
    try:
        with quiet_fds(), working_directory(workdir), warnings.catch_warnings(), contextlib.redirect_stdout(stdout):
            warnings.simplefilter("ignore")
            model = onnx2tf.convert(
                input_onnx_file_path=str(onnx_path),
                output_folder_path=str(workdir / "onnx2tf"),
                disable_model_save=True,
                not_use_onnxsim=simplified,
                disable_strict_mode=not strict,
                non_verbose=True,
                verbosity="error",
            )
    except Exception as exc:
        detail = last_line(stdout.getvalue()) or one_line(exc)
        raise ExportError(f"onnx2tf could not convert {onnx_path.name}: {detail}") from None
    if model is None:
        raise ExportError(f"onnx2tf could not convert {onnx_path.name}: {last_line(stdout.getvalue())}")
    return model


def release_tf() -> None:
    """Drop onnx2tf's Keras graph state: the process keeps far less memory after a conversion."""
    try:
        import tf_keras

        tf_keras.backend.clear_session()
    except Exception:  # best effort
        pass
    gc.collect()
