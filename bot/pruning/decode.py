"""The MXFP4 -> BF16 step: a `DecodeJob`'s kept experts, dequantized chunk by chunk.

The only part of the pruner that imports torch, and only when a BF16 output of an MXFP4
checkpoint is asked for: `bot.mxfp4.TransposedDecoder` writes transformers' fused BF16
layout straight into pooled buffers that the shard writer gives back once written and
hashed, so memory stays bounded by a few chunks per shard.

Example:
    >>> chunks = dequantized(job, reader, Decoding())   # doctest: +SKIP
    >>> sum(len(c) for c in chunks) == job.out.nbytes   # doctest: +SKIP
    True
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.checkpoint.concurrency import BufferPool
from bot.checkpoint.files import CHUNK_BYTES, Loaned, SourceReader
from bot.pruning.plan import DecodeJob

if TYPE_CHECKING:
    from bot.mxfp4 import TransposedDecoder


@dataclass
class Decoding:
    """State kept from one dequantized tensor to the next (one per shard writing thread)."""

    pool: BufferPool = field(default_factory=BufferPool)
    decoder: TransposedDecoder | None = None  # made on first use: torch loads only then


def dequantized(job: DecodeJob, reader: SourceReader, decoding: Decoding) -> Iterator[Loaned]:
    """Dequantized kept experts, about `CHUNK_BYTES` at a time, in the fused layout.

    Packed bytes are mapped (not copied), in file order. Each chunk is a run of 32-value
    groups of the packed input axis, which is a run of rows of the transposed BF16 weight,
    decoded by `TransposedDecoder` into a pooled buffer that the writer gives back once it
    has written and hashed it. Torch runs single-threaded here: the other core writes and
    hashes, and idle OpenMP workers would only spin.
    """
    import torch

    from bot.mxfp4 import TransposedDecoder

    if decoding.decoder is None:
        decoding.decoder = TransposedDecoder()
    ranges = sorted(set(job.reads), key=lambda r: (r.file, r.start))
    data = {r: reader.mapped(r.file, r.start, r.length) for r in ranges}
    rows, groups, width = job.block_shape
    step = max(1, CHUNK_BYTES // (rows * 2 * width * 2))  # groups per chunk
    pool, decoder = decoding.pool, decoding.decoder
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for blocks_range, scales_range in job.experts:
            blocks = torch.frombuffer(data.pop(blocks_range), dtype=torch.uint8)
            scales = torch.frombuffer(data.pop(scales_range), dtype=torch.uint8)
            blocks = blocks.view(rows, groups, width)
            scales = scales.view(rows, groups)
            for first in range(0, groups, step):
                count = min(step, groups - first)
                nbytes = rows * count * width * 2 * 2
                buffer = pool.take(nbytes)
                view = memoryview(buffer)[:nbytes]
                out = torch.frombuffer(view, dtype=torch.bfloat16)
                decoder.decode(
                    blocks[:, first : first + count], scales[:, first : first + count], out
                )
                yield Loaned(view, functools.partial(pool.give_back, buffer))
    finally:
        torch.set_num_threads(threads)
