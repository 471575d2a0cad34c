"""`yolactedge <command>`: a thin layer over the Python API, one verb per job.

Every failure the user can cause ends in a one-line `error: ...` on stderr and a non-zero exit, never a
traceback (set YOLACTEDGE_DEBUG=1 to see one).
"""
from __future__ import annotations

import os
import sys
import traceback
import warnings

from .errors import UsageError, missing_extra_message
from .parser import build_parser

__all__ = ["UsageError", "build_parser", "main", "missing_extra_message"]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(os.environ.get("YOLACTEDGE_DEBUG"))
    if not debug:
        warnings.simplefilter("default")
        warnings.formatwarning = lambda message, category, *rest: f"warning: {message}\n"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {missing_extra_message(exc) or exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the one place that turns failures into one-line messages
        if debug:
            traceback.print_exc()
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        known = isinstance(exc, (ValueError, OSError, ImportError, RuntimeError))
        prefix = "error" if known else f"error ({type(exc).__name__})"
        print(f"{prefix}: {message}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
