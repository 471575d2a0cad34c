"""Ctrl-C that keeps the work: the first SIGINT asks the loop to stop after the step it is in (so that what is
saved is a whole step, never half of one); a second one interrupts at once."""
from __future__ import annotations

import signal
import sys
import threading


class GracefulInterrupt:
    """Context manager; `requested` turns True at the first SIGINT. Only the main thread of a single process
    can take over SIGINT (under torchrun every rank would have to stop at the same step)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False
        self._previous = None

    def __enter__(self) -> GracefulInterrupt:
        if self.enabled:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        if self.enabled:
            signal.signal(signal.SIGINT, self._previous if self._previous is not None else signal.default_int_handler)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("interrupt: saving after this step (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)
