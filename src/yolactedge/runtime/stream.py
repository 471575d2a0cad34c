"""Run the stages of a video stream in their own threads, so that the frame rate is set by the slowest stage.

    source ──► [stage 1] ──► [stage 2] ──► ... ──► consumer (the caller's thread)

Each stage is one thread reading a bounded queue and writing the next, so items leave in the order they came
in and nothing is dropped, unless `latest` is set: then the source keeps only the newest item waiting (a
camera, whose old frames are worth nothing once a newer one exists). NumPy, OpenCV and the inference runtimes
release the GIL while they work, so the stages overlap on separate cores.

An exception in any stage ends the stream and is raised in the consumer; when the consumer stops early (an
error, Ctrl-C, or closing the generator) the stage threads are told to stop and are joined.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

_END = object()
_STOPPED = object()
_POLL_S = 0.1  # how often a blocked thread checks whether the stream was stopped


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


@dataclass
class StreamStats:
    """Busy seconds per stage (time spent inside its function), items through, and frames dropped by `latest`."""

    busy_s: dict[str, float] = field(default_factory=dict)
    items: int = 0
    dropped: int = 0
    wall_s: float = 0.0


def pipelined(source: Iterable[Any], stages: list[tuple[str, Callable[[Any], Any]]], *, queue_size: int = 2,
              latest: bool = False, stats: StreamStats | None = None) -> Iterator[Any]:
    """Yield stages[-1](...stages[0](item)) for each item of `source`, in order, each stage in its own thread.

    `source` is iterated in a thread of its own too (it decodes). stats, when given, is filled as items pass.
    """
    if queue_size < 1:
        raise ValueError(f"queue_size must be at least 1, got {queue_size}")
    stats = stats if stats is not None else StreamStats()
    stop = threading.Event()
    queues = [queue.Queue(maxsize=1 if latest else queue_size)]
    queues += [queue.Queue(maxsize=queue_size) for _ in stages]
    threads = [threading.Thread(target=_read_source, args=(source, queues[0], stop, latest, stats),
                                name="stream-source", daemon=True)]
    for (name, function), inbox, outbox in zip(stages, queues, queues[1:]):
        stats.busy_s.setdefault(name, 0.0)
        threads.append(threading.Thread(target=_run_stage, args=(name, function, inbox, outbox, stop, stats),
                                        name=f"stream-{name}", daemon=True))
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    try:
        while True:
            item = _get(queues[-1], stop)
            if item is _END or item is _STOPPED:
                return
            if isinstance(item, _Failure):
                raise item.exc
            stats.items += 1
            yield item
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
        stats.wall_s = time.perf_counter() - start


def _read_source(source: Iterable[Any], outbox: queue.Queue, stop: threading.Event, latest: bool,
                 stats: StreamStats) -> None:
    """Iterate the source (decoding happens here), its busy time counted as the "source" stage."""
    stats.busy_s.setdefault("source", 0.0)
    iterator = iter(source)
    try:
        while True:
            began = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                break
            stats.busy_s["source"] += time.perf_counter() - began
            if stop.is_set():
                return
            if latest:
                try:
                    outbox.get_nowait()  # an older frame nobody has taken yet: replace it
                    stats.dropped += 1
                except queue.Empty:
                    pass
            if not _put(outbox, item, stop):
                return
    except BaseException as exc:  # handed to the consumer, which raises it
        _put(outbox, _Failure(exc), stop)
        return
    _put(outbox, _END, stop)


def _run_stage(name: str, function: Callable[[Any], Any], inbox: queue.Queue, outbox: queue.Queue,
               stop: threading.Event, stats: StreamStats) -> None:
    while True:
        item = _get(inbox, stop)
        if item is _STOPPED:
            return
        if item is _END or isinstance(item, _Failure):
            _put(outbox, item, stop)
            return
        try:
            began = time.perf_counter()
            result = function(item)
            stats.busy_s[name] += time.perf_counter() - began
        except BaseException as exc:
            _put(outbox, _Failure(exc), stop)
            return
        if not _put(outbox, result, stop):
            return


def _put(box: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put unless the stream stops first; → whether it was put."""
    while not stop.is_set():
        try:
            box.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _get(box: queue.Queue, stop: threading.Event) -> Any:
    """The next item, or _STOPPED once the stream is stopped."""
    while not stop.is_set():
        try:
            return box.get(timeout=_POLL_S)
        except queue.Empty:
            continue
    return _STOPPED
