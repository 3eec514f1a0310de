"""Page-cache states the benchmarks start their timed steps from, and a plain file hash.

The benchmarks run as scripts (`python benchmarks/NAME.py`), so they import this module
from beside them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

Range = tuple[Path, int, int]
"""A file and the byte range `[start, end)` of it."""


def settle(folder: Path, warm: Iterable[Range] = ()) -> None:
    """Sync, evict every file under `folder` from the page cache (`posix_fadvise`, no root
    needed), then read the ranges `warm` into it."""
    os.sync()
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    buffer = memoryview(bytearray(16 << 20))
    for path, start, end in warm:
        with open(path, "rb") as f:
            while start < end:
                start += os.preadv(f.fileno(), [buffer[: end - start]], start) or end - start


def whole_file(path: Path) -> Range:
    return path, 0, path.stat().st_size


def sha256_of(path: Path) -> str:
    """sha256 of a file, read 1 MiB at a time into one buffer, on this thread."""
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(1 << 20))
    with open(path, "rb", buffering=0) as f:
        while got := f.readinto(buffer):
            digest.update(buffer[:got])
    return digest.hexdigest()


@contextlib.contextmanager
def work_folder(given: Path | None, prefix: str) -> Iterator[Path]:
    """`given` (created if missing, kept afterwards), or a new folder under the current one
    (removed afterwards): the page cache of a tmpfs `/tmp` could not be evicted."""
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=Path.cwd()))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
