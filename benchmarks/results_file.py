"""Write a benchmark's results file without the build machine's absolute paths (the brief forbids them in the repo).

A path under the repository becomes relative to it; any other absolute path (a temporary folder, another
checkout) keeps only its file name, which is all a reader of the results can use.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def portable_path(token: str) -> str:
    """`token` relative to the repository when under it, its file name when absolute elsewhere, else unchanged."""
    if len(token) < 2 or not os.path.isabs(token):
        return token
    path = Path(token)
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return path.name


def portable(value: Any) -> Any:
    """`value` with every absolute path in its strings (whole strings or whitespace-separated words) made portable."""
    if isinstance(value, str):
        return " ".join(portable_path(word) for word in value.split(" "))
    if isinstance(value, dict):
        return {key: portable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(item) for item in value]
    return value


def write_results(path: str | os.PathLike, results: Any) -> str:
    """Write `results` as indented JSON at `path` (folders made), paths made portable; return the path to print."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(portable(json.loads(json.dumps(results, default=str))), indent=1))
    return portable_path(str(target.resolve()))
