"""Split a prune's time over `cp` into copying and hashing, on one shard of the real layout.

The pruner copies each kept range file to file (`ShardWriter`, `os.copy_file_range` as `cp`
does) while a second thread computes the sha256 that `hubbot.json` records. This script
copies the largest shard of a real-layout checkpoint (`write_real_layout`, `--layers`
layers) three ways, alternating, each after every file of the work folder is synced and
evicted from the page cache (`posix_fadvise`), and prints the median of `--runs`:

- `cp` of the shard;
- the pruner's path: `SourceReader` slices into a `ShardWriter`, keeping every tensor, so
  it copies and hashes the same bytes as `cp` copies (no torch, no verification);
- sha256 of the shard alone, on one thread, with the shard read into the cache first
  (the writer hashes bytes its copy has just brought in).

If the writer's hash overlapped its copy perfectly, the writer would take
max(cp, sha256); what it takes beyond that is the cost of doing both at once here.

Usage:
    python benchmarks/copy_and_hash.py [--layers 8] [--runs 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from page_cache import settle, sha256_of, whole_file, work_folder

from bot.checkpoint import (
    CHUNK_BYTES,
    Chunk,
    OutTensor,
    ShardWriter,
    SourceReader,
    read_header,
)
from bot.fixtures import write_real_layout
from bot.pruning.execute import LOOKAHEAD_BYTES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    with work_folder(args.workdir, "copy-hash-") as work:
        base = work / f"raw-{args.layers}"
        if not (base / "config.json").is_file():
            write_real_layout(base, num_layers=args.layers)
        shard = max(base.glob("*.safetensors"), key=lambda p: p.stat().st_size)
        size = shard.stat().st_size
        out = work / "copy.safetensors"
        steps: dict[str, Callable[[], object]] = {
            "cp": lambda: subprocess.run(["cp", str(shard), str(out)], check=True),
            "pruner's writer": lambda: writer_copy(shard, out),
            "sha256 alone": lambda: sha256_of(shard),
        }
        warm = {"sha256 alone": [whole_file(shard)]}
        times: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(args.runs):
            for name, step in steps.items():
                out.unlink(missing_ok=True)
                settle(work, warm.get(name, []))
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
        out.unlink(missing_ok=True)

    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"{shard.name}: {size:,} bytes; median of {args.runs} runs; {os.cpu_count()} cpus")
    for name, values in times.items():
        runs = " ".join(f"{v:.2f}" for v in values)
        speed = size / medians[name] / 1e9
        print(f"  {name:<16s}{medians[name]:7.2f} s  {speed:5.2f} GB/s  runs {runs}")
    cp_s, writer_s = medians["cp"], medians["pruner's writer"]
    ideal = max(cp_s, medians["sha256 alone"])
    print(f"  writer / cp            {writer_s / cp_s:.2f}")
    print(f"  max(cp, sha256) / cp   {ideal / cp_s:.2f}  (the writer's floor, if both overlap)")


def writer_copy(shard: Path, out: Path) -> str:
    """Copy `shard` as the pruner does, every tensor kept, asking the disk for input
    `LOOKAHEAD_BYTES` ahead of the writer; the output's sha256."""
    tensors = read_header(shard)
    size = shard.stat().st_size
    reader = SourceReader([shard], [])
    writer = ShardWriter(out, [OutTensor(t.name, t.dtype, t.shape) for t in tensors.values()])
    try:
        for t in tensors.values():
            writer.write_tensor(t.name, ahead(reader, shard, t.start, t.end, size))
        return writer.close()
    finally:
        reader.close()


def ahead(reader: SourceReader, path: Path, start: int, end: int, size: int) -> Iterator[Chunk]:
    """Slices of `[start, end)`, each handed out once the range after it is asked for."""
    for at in range(start, end, CHUNK_BYTES):
        early = at + LOOKAHEAD_BYTES
        reader.prefetch(path, early, max(0, min(CHUNK_BYTES, size - early)))
        yield reader.slice(path, at, min(CHUNK_BYTES, end - at))


if __name__ == "__main__":
    main()
