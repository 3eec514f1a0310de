"""Running a `PrunePlan`: read the planned byte ranges, write and hash the output shards.

The fast path: copied ranges move file to file in the kernel and are hashed from read-only
maps (`bot.checkpoint.files`), input is asked of the disk `LOOKAHEAD_BYTES` ahead of the
writer, and on a machine with cores to spare several shards are written at once, each
with its own hash thread; the bytes are the same as when written one after another. Base
shards that no Hugging Face cache names by sha256 are hashed as they are read.

Example:
    >>> written = write_shards(src, tmp, ckpt, plan)   # doctest: +SKIP
    >>> sorted(written.files)                           # doctest: +SKIP
    ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from bot.checkpoint.concurrency import prefetched
from bot.checkpoint.files import CHUNK_BYTES, Chunk, ShardWriter, SourceReader, known_sha256
from bot.checkpoint.format import Checkpoint
from bot.errors import HubbotError
from bot.pruning.decode import Decoding, dequantized
from bot.pruning.plan import CopyJob, Job, OutputShard, PrunePlan

LOOKAHEAD_BYTES = 64 * 1024 * 1024
"""How far ahead of the writer input is asked of the disk (page cache, not process memory)."""
PARALLEL_SHARDS = 3
"""At most this many output shards are written (and hashed) at once: sha256 of one file is
one thread's work (about 1.1 GB/s), so one shard at a time cannot keep up with a fast disk.
Each shard in flight maps at most about 7 chunks of `CHUNK_BYTES`, which bounds memory."""
PARALLEL_DEQUANTIZED_SHARDS = 2
"""The same for BF16 output, whose shards also hold a pool of decoded buffers each."""


@dataclass(frozen=True)
class ShardsWritten:
    """What writing a plan's shards took: sha256 per output shard and per base file
    (relative to the base folder), and the bytes read and written."""

    files: dict[str, str]
    base_files: dict[str, str]
    bytes_read: int
    bytes_written: int


def write_shards(src: Path, out: Path, ckpt: Checkpoint, plan: PrunePlan) -> ShardsWritten:
    """Write every shard of `plan` into folder `out`; base shards are hashed as read unless
    the cache names them.

    Shards are written `shard_workers` at a time, each on its own thread with its own hash
    thread; if one fails, the others stop and the first real failure is raised.
    """
    known = {path: known_sha256(path) for path in ckpt.shards}
    hashed = [path for path, sha in known.items() if sha is None]
    reader = SourceReader(ckpt.shards, hashed)
    workers = shard_workers(len(plan.shards), dequantize=plan.decodes, hashing_base=bool(hashed))
    stop = threading.Event()

    def write(shard: OutputShard, lookahead: _Lookahead, decoding: Decoding) -> tuple[str, int]:
        writer = ShardWriter(out / shard.name, shard.tensors)
        try:
            for job in shard.jobs:
                if stop.is_set():
                    raise _Stopped(f"{out / shard.name}: stopped, another shard failed")
                lookahead.advance()
                writer.write_tensor(job.out.name, prefetched(_chunks(job, reader, decoding)))
        except BaseException:
            stop.set()
            writer.abort()
            raise
        return writer.close(), writer.bytes_written

    try:
        if workers == 1:  # one lookahead and one decoder across shard boundaries
            lookahead = _Lookahead(reader, [job for shard in plan.shards for job in shard.jobs])
            decoding = Decoding()
            results = [write(shard, lookahead, decoding) for shard in plan.shards]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [
                    pool.submit(write, shard, _Lookahead(reader, list(shard.jobs)), Decoding())
                    for shard in plan.shards
                ]
                wait(futures, return_when=FIRST_EXCEPTION)
                if stop.is_set():
                    for future in futures:
                        future.cancel()
                    wait(futures)
                    errors = [e for f in futures if not f.cancelled() if (e := f.exception())]
                    raise next((e for e in errors if not isinstance(e, _Stopped)), errors[0])
                results = [future.result() for future in futures]
        hashes = {**known, **reader.finish()}
    finally:
        reader.close()
    return ShardsWritten(
        files={shard.name: digest for shard, (digest, _) in zip(plan.shards, results, strict=True)},
        base_files={path.relative_to(src).as_posix(): sha for path, sha in hashes.items() if sha},
        bytes_read=reader.bytes_read + ckpt.header_bytes,
        bytes_written=sum(written for _, written in results),
    )


class _Stopped(HubbotError):
    """A shard's thread gave up because another shard's failed (that failure is raised)."""


def shard_workers(shards: int, *, dequantize: bool, hashing_base: bool) -> int:
    """How many output shards to write at once on this machine.

    One when the base must be hashed as it is read (in file order), or with fewer than
    four cores (copying and hashing one shard already keep two busy); else up to
    `PARALLEL_SHARDS` (`PARALLEL_DEQUANTIZED_SHARDS` for BF16 output), two cores each.
    """
    if hashing_base:
        return 1
    limit = PARALLEL_DEQUANTIZED_SHARDS if dequantize else PARALLEL_SHARDS
    return max(1, min(shards, limit, _cores() // 2))


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class _Lookahead:
    """Asks the disk for the input of the jobs after the current one, `LOOKAHEAD_BYTES` ahead
    of the writer, so reads overlap writing and hashing even from a cold cache."""

    def __init__(self, reader: SourceReader, jobs: list[Job]) -> None:
        self._reader = reader
        self._ranges = [job.reads for job in jobs]
        self._sizes = [sum(r.length for r in ranges) for ranges in self._ranges]
        self._current = -1
        self._asked = 0  # jobs [0, _asked) have been asked for

    def advance(self) -> None:
        """Move to the next job and ask for what follows it."""
        self._current += 1
        ahead = sum(self._sizes[self._current + 1 : self._asked])
        while self._asked < len(self._ranges) and ahead < LOOKAHEAD_BYTES:
            for r in self._ranges[self._asked]:
                self._reader.prefetch(r.file, r.start, r.length)
            if self._asked > self._current:
                ahead += self._sizes[self._asked]
            self._asked += 1


def _chunks(job: Job, reader: SourceReader, decoding: Decoding) -> Iterator[Chunk]:
    """The bytes of one output tensor, at most `CHUNK_BYTES` (or one expert) at a time."""
    if isinstance(job, CopyJob):
        for r in job.ranges:
            for offset in range(0, r.length, CHUNK_BYTES):
                yield reader.slice(r.file, r.start + offset, min(CHUNK_BYTES, r.length - offset))
    else:
        yield from dequantized(job, reader, decoding)
