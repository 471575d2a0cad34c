"""Writing files so that a reader (or a crash) sees the old file or the new one, never half of one.

No third-party imports: the runtime path (predict, val) uses it without torch.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def give_default_permissions(path: str | os.PathLike) -> None:
    """The mode a plain `open(path, "w")` would have given (0666 less the umask): mkstemp creates files 0600, and
    a model or report is an ordinary file its owner's group may read."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_temporary(path: Path, write) -> Path:
    """`write(f)` into a hidden temporary file beside `path`, synced and with default permissions, ready to be
    renamed onto `path` (by the caller, once it has checked what was written)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        give_default_permissions(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, fsync, then rename: readers see old or new, never half."""
    tmp = write_temporary(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, data, **dumps_options) -> Path:
    """JSON through `atomic_write`, creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(json.dumps(data, **dumps_options).encode()))
    return path
