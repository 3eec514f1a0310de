"""Safetensors files on disk: reading headers and byte ranges, writing shards.

Data moves by byte range, so pruning touches only the bytes it keeps: copied file to file
by the kernel (`os.copy_file_range`, as `cp` does) and hashed from read-only maps of just
those ranges (`MAP_POPULATE`: faulted in by the reader, not the hash thread), or mapped
copy-on-write where it must be transformed. A header is parsed and checked
(`bot.checkpoint.format`) before any data is read. Writers know their header up front and
hash what they write on a background thread; pooled buffers (`Loaned`) go back to their
pool once written and hashed.

Example:
    >>> ckpt = open_checkpoint(Path("gpt-oss-20b"))                   # doctest: +SKIP
    >>> ckpt.tensors["model.layers.0.mlp.router.weight"].shape        # doctest: +SKIP
    (32, 2880)
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.checkpoint.concurrency import Buffer, Sha256Worker
from bot.checkpoint.format import (
    INDEX_FILE,
    SINGLE_FILE,
    Checkpoint,
    OutTensor,
    TensorInfo,
    encode_header,
    header_length,
    parse_header,
    weight_map_of,
)
from bot.errors import HubbotError, InputError
from bot.inputs import read_json

CHUNK_BYTES = 16 * 1024 * 1024
"""Bytes moved per read; bounds the memory a copy holds."""
PREFETCH_STEP = 1024 * 1024
"""Bytes asked of the disk per readahead request (see `SourceReader.prefetch`)."""

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux
_NO_KERNEL_COPY = {errno.ENOSYS, errno.EXDEV, errno.EINVAL, errno.EOPNOTSUPP}


def read_header(path: Path) -> dict[str, TensorInfo]:
    """Parse and check a safetensors header; tensors in file order. `InputError` names the file."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            length = header_length(path, f.read(8), size)
            raw = f.read(length)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_header(path, raw, size)


def open_checkpoint(folder: Path) -> Checkpoint:
    """Read a folder's index (or single `model.safetensors`) and every shard header."""
    folder = Path(folder)
    index_path = folder / INDEX_FILE
    if index_path.is_file():
        weight_map = _read_index(index_path)
        shard_names = list(dict.fromkeys(weight_map.values()))
    elif (folder / SINGLE_FILE).is_file():
        index_path, weight_map, shard_names = None, None, [SINGLE_FILE]
    else:
        raise InputError(f"{folder}: no {INDEX_FILE} or {SINGLE_FILE}")
    headers: dict[str, dict[str, TensorInfo]] = {}
    for shard_name in shard_names:
        if not (folder / shard_name).is_file():
            raise InputError(f"{index_path}: names shard {shard_name}, which does not exist")
        headers[shard_name] = read_header(folder / shard_name)
    if weight_map is None:
        tensors = dict(headers[SINGLE_FILE])
    else:
        tensors = {}
        for name, shard_name in weight_map.items():
            info = headers[shard_name].get(name)
            if info is None:
                raise InputError(f"{index_path}: tensor {name} is not in its shard {shard_name}")
            tensors[name] = info
        unlisted = [t for h in headers.values() for t in h.values() if t.name not in weight_map]
        if unlisted:
            raise InputError(
                "\n".join(
                    f"{t.file}: holds tensor {t.name}, which {index_path.name} does not list"
                    for t in unlisted[:50]
                )
            )
    header_bytes = sum(min((t.start for t in h.values()), default=8) for h in headers.values())
    shards = tuple(folder / name for name in shard_names)
    return Checkpoint(folder, index_path, shards, tensors, header_bytes)


def _read_index(path: Path) -> dict[str, str]:
    try:
        data = read_json(path)
    except InputError as exc:
        raise InputError(f"not a readable index: {exc}") from None
    return weight_map_of(path, data)


def known_sha256(path: Path) -> str | None:
    """The sha256 a Hugging Face cache already names a file by (`blobs/<sha256>`), if any.

    huggingface_hub stores LFS files under their sha256 and links snapshots to them, so a
    base model downloaded from the Hub needs no hashing pass.
    """
    if not path.is_symlink():
        return None
    target = path.resolve()
    if target.parent.name == "blobs" and _SHA256.match(target.name):
        return target.name
    return None


@dataclass(frozen=True)
class FileSlice:
    """Bytes of an open source file: a writer copies them file to file in the kernel
    (`os.copy_file_range`, as `cp` does) and hashes them from `view`, a read-only map."""

    fd: int
    offset: int
    view: memoryview

    def __len__(self) -> int:
        return len(self.view)


@dataclass(frozen=True)
class Loaned:
    """Bytes in a pooled buffer: the writer calls `release` once they are written and hashed,
    and the producer must not touch `view` after handing it over."""

    view: memoryview
    release: Callable[[], None]

    def __len__(self) -> int:
        return len(self.view)


Chunk = Buffer | FileSlice | Loaned
"""What a writer takes: bytes in memory (maybe loaned), or a slice of a source file."""


class SourceReader:
    """Reads byte ranges of source files, counting bytes and optionally hashing each file.

    Without hashed files, ranges may be read from several threads at once. A hashed file
    is hashed in file order (one thread): a read ahead of the hashing cursor first hashes
    the gap. Reads in file order therefore read every byte once; `finish` hashes the rest.

    The kernel reads just the ranges asked for: speculative readahead is off (it would read
    the dropped experts beside each kept one, 8 MiB at a time here), and ranges are instead
    asked of the disk ahead of use (`prefetch`).
    """

    def __init__(self, files: Iterable[Path], hashed: Iterable[Path]) -> None:
        self.bytes_read = 0
        self._count_lock = threading.Lock()  # slices may be taken on several threads
        self._fds = {path: os.open(path, os.O_RDONLY) for path in files}
        for fd in self._fds.values():
            _advise(fd, 0, 0, "POSIX_FADV_RANDOM")
        self._sizes = {path: os.fstat(fd).st_size for path, fd in self._fds.items()}
        self._hashes = {path: Sha256Worker() for path in hashed}
        self._cursor = dict.fromkeys(self._hashes, 0)

    def read(self, path: Path, offset: int, length: int) -> bytearray:
        """`length` bytes of `path` from `offset`, copied (keep them, do not change them)."""
        self._check(path, offset, length)
        data = bytearray(length)
        view, done = memoryview(data), 0
        while done < length:
            got = os.preadv(self._fds[path], [view[done:]], offset + done)
            if got == 0:
                raise InputError(f"{path}: truncated: cannot read {length} bytes at {offset}")
            done += got
        self._account(path, offset, view)
        return data

    def slice(self, path: Path, offset: int, length: int) -> FileSlice:
        """`length` bytes of `path` from `offset`, mapped, not copied."""
        self._check(path, offset, length)
        view = self._map(path, offset, length)
        self._account(path, offset, view)
        return FileSlice(self._fds[path], offset, view)

    def mapped(self, path: Path, offset: int, length: int) -> memoryview:
        """`length` bytes of `path` from `offset`, mapped copy-on-write: not copied, writable
        (as torch wants a buffer to be), and never written back. Do not change them."""
        self._check(path, offset, length)
        view = self._map(path, offset, length, access=mmap.ACCESS_COPY)
        self._account(path, offset, view)
        return view

    def prefetch(self, path: Path, offset: int, length: int) -> None:
        """Have the kernel start reading a range that will be asked for soon.

        Linux reads at most one readahead window per request (8 MiB here, often less), so
        the range is asked for in steps no window is smaller than.
        """
        for start in range(offset, offset + length, PREFETCH_STEP):
            step = min(PREFETCH_STEP, offset + length - start)
            _advise(self._fds[path], start, step, "POSIX_FADV_WILLNEED")

    def _check(self, path: Path, offset: int, length: int) -> None:
        """Refuse a range past the end of the file, else start reading it from disk."""
        if offset + length > self._sizes[path]:
            raise InputError(f"{path}: truncated: cannot read {length} bytes at {offset}")
        self.prefetch(path, offset, length)

    def _map(
        self, path: Path, offset: int, length: int, access: int = mmap.ACCESS_READ
    ) -> memoryview:
        if length == 0:
            return memoryview(bytearray() if access == mmap.ACCESS_COPY else b"")
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        fd, size = self._fds[path], offset + length - start
        if access == mmap.ACCESS_READ and _POPULATE:
            # Fault the pages in now, on the thread that maps (the reader, ahead of the
            # writer), not one by one on the hash thread, whose speed bounds a shard's.
            flags = mmap.MAP_SHARED | _POPULATE
            mapped = mmap.mmap(fd, size, flags=flags, prot=mmap.PROT_READ, offset=start)
        else:
            mapped = mmap.mmap(fd, size, access=access, offset=start)
        return memoryview(mapped)[offset - start :]

    def _account(self, path: Path, offset: int, data: memoryview) -> None:
        with self._count_lock:
            self.bytes_read += len(data)
        worker = self._hashes.get(path)
        if worker is None:
            return
        if offset > self._cursor[path]:
            self._hash_gap(path, offset)
        if offset + len(data) > self._cursor[path]:
            worker.update(data[self._cursor[path] - offset :])
            self._cursor[path] = offset + len(data)

    def _hash_gap(self, path: Path, until: int) -> None:
        while (cursor := self._cursor[path]) < until:
            length = min(CHUNK_BYTES, until - cursor)
            self.prefetch(path, cursor, length)
            self._hashes[path].update(self._map(path, cursor, length))
            self.bytes_read += length
            self._cursor[path] = cursor + length

    def finish(self) -> dict[Path, str]:
        """Hash the rest of every hashed file; sha256 per hashed file."""
        for path in self._hashes:
            self._hash_gap(path, self._sizes[path])
        return {path: worker.hexdigest() for path, worker in self._hashes.items()}

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        for worker in self._hashes.values():
            worker.hexdigest()


def _advise(fd: int, offset: int, length: int, advice: str) -> None:
    """`posix_fadvise` where the platform has it (Linux); a hint, so failures are ignored."""
    if hasattr(os, advice):
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, offset, length, getattr(os, advice))


class ShardWriter:
    """Writes one safetensors file whose tensors are known up front, hashing as it goes.

    Tensors must be written in the planned order; `close` checks that all were written and
    returns the file's sha256.
    """

    def __init__(self, path: Path, tensors: Sequence[OutTensor]) -> None:
        self.path = path
        self.bytes_written = 0
        self._pending = list(reversed(tensors))
        self._hash = Sha256Worker()
        self._kernel_copy = hasattr(os, "copy_file_range")
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._write(encode_header(tensors))

    def write_tensor(self, name: str, chunks: Iterable[Chunk]) -> None:
        """Write the next planned tensor from its chunks of bytes."""
        expected = self._pending.pop() if self._pending else None
        if expected is None or expected.name != name:
            raise HubbotError(f"{self.path}: wrote {name}, planned {expected and expected.name}")
        written = 0
        for chunk in chunks:
            self._write(chunk)
            written += len(chunk)
        if written != expected.nbytes:
            raise HubbotError(f"{self.path}: {name}: wrote {written} of {expected.nbytes} bytes")

    def _write(self, data: Chunk) -> None:
        if isinstance(data, FileSlice):
            self._hash.update(data.view)
            self._copy(data)
        elif isinstance(data, Loaned):
            view = data.view
            while view:
                view = view[os.write(self._fd, view) :]
            self._hash.update(data.view, data.release)  # hashed while the next one is written
        else:
            self._hash.update(data)
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        self.bytes_written += len(data)

    def _copy(self, piece: FileSlice) -> None:
        done = 0
        while done < len(piece):
            got = self._copy_some(piece, done)
            if got == 0:
                raise HubbotError(f"{self.path}: the source ended early")
            done += got

    def _copy_some(self, piece: FileSlice, done: int) -> int:
        """Copy from `piece` at `done` in the kernel if it can, else from the map."""
        if self._kernel_copy:
            try:
                left = len(piece) - done
                return os.copy_file_range(piece.fd, self._fd, left, piece.offset + done)
            except OSError as exc:
                if exc.errno not in _NO_KERNEL_COPY:
                    raise
                self._kernel_copy = False
        return os.write(self._fd, piece.view[done:])

    def close(self) -> str:
        """Close the file and return its sha256."""
        os.close(self._fd)
        digest = self._hash.hexdigest()
        if self._pending:
            raise HubbotError(f"{self.path}: {self._pending[-1].name} was never written")
        return digest

    def abort(self) -> None:
        """Close after a failure (the caller removes the folder)."""
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._hash.hexdigest()
