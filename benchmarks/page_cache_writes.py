"""How fast this machine writes a large file, with the page cache empty or already full.

The prune benchmark's two steps (prune, `cp`) each write GBs while their input sits in
the page cache. This script separates the machine from the pruner: it writes `--gb` GB of
random bytes to a fresh file (`os.write`, 16 MiB at a time, no sync) after

- evicting every file of the work folder from the page cache (`posix_fadvise`), or
- evicting, then reading a `--cached-gb` GB file into the cache (clean pages),

alternating the two, and prints the median throughput of each and their ratio. On a
machine with memory to spare the two agree; where they do not, the prune figures reflect
the machine's memory as much as the pruner.

Usage:
    python benchmarks/page_cache_writes.py [--gb 8.7] [--cached-gb 9] [--runs 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from page_cache import settle, whole_file, work_folder

CHUNK = 16 << 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=8.7)
    parser.add_argument("--cached-gb", type=float, default=9.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    with work_folder(args.workdir, "cache-writes-") as work:
        filler, target = work / "cached.bin", work / "written.bin"
        write_file(filler, int(args.cached_gb * 1e9))
        size = int(args.gb * 1e9)
        empty, full = [], []
        for _ in range(args.runs):
            empty.append(timed_write(work, target, size, warm=None))
            full.append(timed_write(work, target, size, warm=filler))
        for path in (filler, target):
            path.unlink(missing_ok=True)

    e, f = statistics.median(empty), statistics.median(full)
    print(f"writing {size:,} bytes, median of {args.runs} runs ({os.cpu_count()} cpus)")
    cached = f"{args.cached_gb:g} GB of clean cache"
    print(f"  {'page cache empty':<28s}{e:5.2f} GB/s   runs {fmt(empty)}")
    print(f"  {cached:<28s}{f:5.2f} GB/s   runs {fmt(full)}")
    print(f"  {'ratio (empty / full)':<28s}{e / f:5.2f}")


def timed_write(work: Path, target: Path, size: int, warm: Path | None) -> float:
    """GB/s of writing `size` bytes to `target`, after evicting `work` and reading `warm`."""
    target.unlink(missing_ok=True)
    settle(work, [] if warm is None else [whole_file(warm)])
    start = time.perf_counter()
    write_file(target, size)
    return size / (time.perf_counter() - start) / 1e9


def write_file(path: Path, size: int) -> None:
    data = os.urandom(CHUNK)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for start in range(0, size, CHUNK):
            view = memoryview(data)[: min(CHUNK, size - start)]
            while view:
                view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def fmt(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    main()
