"""Threads and buffers that keep reading, writing and hashing busy at once.

A background sha256 (`Sha256Worker`), a chunk iterator run a few chunks ahead on its own
thread (`prefetched`), reusable buffers (`BufferPool`) and the glibc setting that lets
freed ones go back to the OS. Nothing here knows the safetensors format.

Example:
    >>> worker = Sha256Worker()
    >>> worker.update(b"abc")
    >>> worker.hexdigest()[:12]
    'ba7816bf8f01'
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

Buffer = bytes | bytearray | memoryview
T = TypeVar("T")

_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


class Sha256Worker:
    """sha256 of a stream of chunks, computed on a background thread in order."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[tuple[Buffer, Callable[[], None] | None] | None]
        self._queue = queue.Queue(maxsize=4)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            chunk, done = item
            self._hash.update(chunk)
            if done is not None:
                done()

    def update(self, chunk: Buffer, done: Callable[[], None] | None = None) -> None:
        """Queue a chunk; the caller must not change it until `done` (if given) is called."""
        self._queue.put((chunk, done))

    def hexdigest(self) -> str:
        """Wait for every queued chunk and return the digest."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        return self._hash.hexdigest()


class BufferPool:
    """Reusable byte buffers, so a stream of chunks does not fault in fresh pages for each.

    `take` never waits: with no free buffer large enough it allocates one; `give_back`
    keeps at most `keep` buffers and drops the rest.
    """

    def __init__(self, keep: int = 8) -> None:
        self._keep = keep
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> bytearray:
        """A buffer of at least `nbytes` bytes (not zeroed when reused)."""
        with self._lock:
            while self._free:
                buffer = self._free.pop()
                if len(buffer) >= nbytes:
                    return buffer
        return bytearray(nbytes)

    def give_back(self, buffer: bytearray) -> None:
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(buffer)


@functools.cache
def return_freed_buffers() -> None:
    """Have glibc give freed 16 MiB buffers back to the OS at once.

    Its default mmap threshold rises to the size of freed buffers, after which they stay in
    the heap: a BF16 prune of 8 layers then peaks at 1.2 GB instead of 0.5 GB. Elsewhere
    (no glibc) this does nothing.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, 4 * 1024 * 1024)


def prefetched(chunks: Iterator[T]) -> Iterator[T]:
    """Run a chunk iterator on a thread, a few chunks ahead, so reading overlaps writing."""
    ready: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def produce() -> None:
        try:
            for chunk in chunks:
                if not _offer(ready, ("chunk", chunk), stop):
                    return
            _offer(ready, ("done", None), stop)
        except BaseException as exc:
            _offer(ready, ("error", exc), stop)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            kind, item = ready.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _offer(
    ready: queue.Queue[tuple[str, Any]], item: tuple[str, Any], stop: threading.Event
) -> bool:
    """Put `item` unless the consumer stopped; whether it was put."""
    while not stop.is_set():
        try:
            ready.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False
