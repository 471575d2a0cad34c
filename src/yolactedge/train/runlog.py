"""Where a run reports: lines on stdout (through the progress bar when there is one) and `metrics.jsonl`.
Only rank 0 reports; on the other ranks every call does nothing."""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .state import METRICS_NAME


class Averages:
    """Running means of the per-step values between two log lines."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, values: Mapping[str, float]) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1

    def mean(self) -> dict[str, float]:
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}


def format_record(record: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in record.items() if k != "iteration")


class RunLog:
    def __init__(self, out: Path, enabled: bool) -> None:
        self.metrics_path = out / METRICS_NAME
        self.enabled = enabled
        self.bar = None

    def open_bar(self, total: int, initial: int, show: bool | None) -> None:
        """A tqdm bar on stderr (default: when stderr is a terminal); without one, log lines say the progress."""
        from tqdm import tqdm

        if self.enabled and (sys.stderr.isatty() if show is None else show):
            self.bar = tqdm(total=total, initial=initial, desc="train", unit="it", dynamic_ncols=True, file=sys.stderr)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def print(self, message: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(message, file=sys.stdout)
        else:
            print(message, file=sys.stdout)
        sys.stdout.flush()

    def warn(self, message: str) -> None:
        """A `warning:` line on stderr, in the CLI's style, as it happens (not only in the metrics)."""
        if self.enabled:
            print(f"warning: {message}", file=sys.stderr, flush=True)

    def train_interval(self, record: Mapping[str, Any], means: Mapping[str, float], max_iter: int) -> None:
        if not self.enabled:
            return
        self._append({"kind": "train", "time": time.time(), **record})
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.3f}" for k, v in means.items()}, refresh=False)
        else:
            self.print(f"iter {record['iteration']}/{max_iter} " + format_record(record))

    def validation(self, record: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        self._append({"kind": "val", **record})
        self.print("val  " + format_record(record))

    def _append(self, record: Mapping[str, Any]) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
