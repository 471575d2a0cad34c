"""`yolactedge <command>`: a thin layer over the Python API, one verb per job.

Every failure the user can cause ends in a one-line `error: ...` on stderr and a non-zero exit, never a
traceback (set YOLACTEDGE_DEBUG=1 to see one).
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings

from . import __version__


class UsageError(ValueError):
    """Bad arguments the parser itself cannot catch."""


def _cmd_info(args: argparse.Namespace) -> int:
    from .info import describe_model

    print(describe_model(args.model))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yolactedge",
        description="YOLACT-Edge instance segmentation: convert, run, evaluate, benchmark, train.",
        epilog="examples:\n  yolactedge demo\n  yolactedge info demo\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"yolactedge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    info = sub.add_parser("info", help="describe a model: config, parameters, MACs, input and output shapes")
    info.add_argument("model", help="checkpoint (.pth), .onnx, .tflite, or 'demo'")
    info.set_defaults(func=_cmd_info)
    return parser


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
    except Exception as exc:  # the one place that turns failures into one-line messages
        if debug:
            traceback.print_exc()
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        known = isinstance(exc, (ValueError, OSError, ImportError, RuntimeError))
        prefix = "error" if known else f"error ({type(exc).__name__})"
        print(f"{prefix}: {message}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1


if __name__ == "__main__":
    sys.exit(main())
