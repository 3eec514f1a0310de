"""Safetensors checkpoints: the format as values, files on disk, and the threads that move them.

Three levels, each importing only the ones before it, none importing torch: `format` is the
pure safetensors format (tensor entries, header parsing and encoding, shard splitting and
naming, the index), testable without a file; `concurrency` holds the helpers that keep
reading, writing and hashing busy at once (a background sha256, a chunk iterator run
ahead on its own thread, pooled buffers); `files` reads headers and byte ranges from disk
(mapped, prefetched, optionally hashed as read) and writes shards (kernel copies, hashed
as written). Callers import the names below from `bot.checkpoint` itself.

Example:
    >>> ckpt = open_checkpoint(Path("gpt-oss-20b"))                   # doctest: +SKIP
    >>> ckpt.tensors["model.layers.0.mlp.router.weight"].shape        # doctest: +SKIP
    (32, 2880)
"""

from bot.checkpoint.concurrency import (
    Buffer,
    BufferPool,
    Sha256Worker,
    prefetched,
    return_freed_buffers,
)
from bot.checkpoint.files import (
    CHUNK_BYTES,
    PREFETCH_STEP,
    Chunk,
    FileSlice,
    Loaned,
    ShardWriter,
    SourceReader,
    known_sha256,
    open_checkpoint,
    read_header,
)
from bot.checkpoint.format import (
    DTYPE_BYTES,
    INDEX_FILE,
    SINGLE_FILE,
    Checkpoint,
    OutTensor,
    TensorInfo,
    encode_header,
    encode_index,
    parse_header,
    plan_shards,
    shard_file_name,
)

__all__ = [
    "CHUNK_BYTES",
    "DTYPE_BYTES",
    "INDEX_FILE",
    "PREFETCH_STEP",
    "SINGLE_FILE",
    "Buffer",
    "BufferPool",
    "Checkpoint",
    "Chunk",
    "FileSlice",
    "Loaned",
    "OutTensor",
    "Sha256Worker",
    "ShardWriter",
    "SourceReader",
    "TensorInfo",
    "encode_header",
    "encode_index",
    "known_sha256",
    "open_checkpoint",
    "parse_header",
    "plan_shards",
    "prefetched",
    "read_header",
    "return_freed_buffers",
    "shard_file_name",
]
