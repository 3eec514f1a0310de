"""Measure the streaming pruner on a checkpoint of the exact openai/gpt-oss-20b layout.

A random checkpoint of the real layout (`write_real_layout`, 13.8 GB MXFP4 for 24 layers)
is pruned to 16 experts per layer (a fixed random choice per layer), to MXFP4 and to BF16.
Each prune runs in a child process; per output format it prints the median over `--runs` of

- prune wall time (the `prune_checkpoint` call: reading, writing, hashing, verification),
- `cp -r` of the same output folder, timed in the same run, and the ratio of the two,
- both again up to the end of the `sync` that follows them: either may return with GBs
  still to write back, and this counts them,
- peak RSS of the child: its own `VmHWM`. `ru_maxrss` from `wait4` is printed beside it
  but overstates: Linux carries the high-water mark over `exec`, so it includes the pages
  of this (parent) process the child shared before it exec'd (torch's, once imported),
- bytes read / bytes written, and how long sha256 of the output alone takes here,
- where the prune's time goes: wall and CPU seconds of each phase (imports, headers,
  writing: copying and hashing, the expected-tensor table, verification, rename, and the
  writeback of the sync after it), clocked by wrapping the pruner's own functions in the
  child, so the same script measures older versions of the pruner too.

Both timed steps start from the same page-cache state, set with `posix_fadvise` (no root
needed): dirty pages are synced and every file of the work folder is evicted, so neither
step pays to reclaim the other's pages. With `--cache cold` each step then reads its input
from disk; with `--cache warm` its input is read into the cache first (for the prune, just
the byte ranges it reads: every tensor but the dropped experts).

On a VM that hands free memory back to its host (virtio-balloon free page reporting, as on
the Firecracker dev machine), a new page-cache page may cost a host fault, and how many do
depends on what was freed when; `benchmarks/page_cache_writes.py` measures that effect
alone. Where it is large, the ratios below say more about the machine than the pruner.
The header line `free page reporting` says whether it is on here; as root, writing 11 to
/sys/module/page_reporting/parameters/page_reporting_order stops it (no free block is that
large) until the old value is written back.

The base is laid out like a Hugging Face cache snapshot (`blobs/<sha256>` + links), as
`snapshot_download` leaves it, so base hashes come from the blob names; `--base plain`
uses hard links with the real names instead, so the pruner must hash the base as it reads.

Usage:
    python benchmarks/prune_throughput.py [--layers 24] [--runs 3] [--dtype mxfp4 bf16]
        [--cache cold warm] [--base cache] [--workdir DIR] [--max-shard-gib 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from page_cache import Range, settle, sha256_of, whole_file, work_folder

from bot.checkpoint import open_checkpoint
from bot.fixtures import real_layout_bytes, write_real_layout

EXPERTS, KEPT = 32, 16
EXPERT_TENSOR = re.compile(r"model\.layers\.(\d+)\.mlp\.experts\.")
CHILD = r"""
import json, sys, threading, time
start = time.perf_counter()
import bot.checkpoint as ck
import bot.prune as pr
import_s = time.perf_counter() - start
from pathlib import Path

# Per-phase clocks: the pruner's own functions, wrapped (wall and thread CPU seconds, summed
# over the threads that ran them), under whichever of their names this version has.
lock, phases = threading.Lock(), {}

def add(name, wall, cpu):
    with lock:
        w, c, n = phases.get(name, (0.0, 0.0, 0))
        phases[name] = (w + wall, c + cpu, n + 1)

def clocked(name, fn):
    def wrapper(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            add(name, time.perf_counter() - wall, time.thread_time() - cpu)
    return wrapper

ck.Sha256Worker._run = clocked("hashing", ck.Sha256Worker._run)
ck.ShardWriter.write_tensor = clocked("copying", ck.ShardWriter.write_tensor)
ck.ShardWriter.close = clocked("hash tail", ck.ShardWriter.close)
for name, fns in [("headers", ["open_checkpoint"]), ("expected tensors", ["expected_tensors"]),
                  ("verification", ["check_structure"]),
                  ("writing", ["write_shards", "_write_shards"]), ("other files", ["_write"]),
                  ("rename", ["replace_folder", "_replace"])]:
    for fn in fns:  # names differ between versions: clock the ones this one has
        if hasattr(pr, fn):
            setattr(pr, fn, clocked(name, getattr(pr, fn)))

src, dst, dtype, keep = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
shards = {"max_shard_bytes": int(sys.argv[5])} if len(sys.argv) > 5 else {}
start = time.perf_counter()
pruned = pr.prune_checkpoint(Path(src), Path(dst), {int(k): v for k, v in keep.items()},
                             dtype=dtype, **shards)
seconds = time.perf_counter() - start
try:
    disk = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
except OSError:
    disk = {"read_bytes": "-1"}
heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
status = Path("/proc/self/status").read_text()
hwm = int(status.split("VmHWM:")[1].split()[0]) * 1024 if "VmHWM:" in status else -1
print(json.dumps({"hwm": hwm, "seconds": seconds, "read": pruned.bytes_read,
                  "written": pruned.bytes_written, "disk_read": int(disk["read_bytes"]),
                  "import": import_s, "heavy": heavy, "phases": phases}))
"""
PHASES = """\
  phases (medians; wall s / CPU s summed over the threads that ran them, xN calls)
    imports       {imports}  (bot.prune; loaded during the prune: {heavy})
    headers       {headers}  (source and output headers)
    writing       {writing}  (every shard: copying and hashing overlap in it)
      copying     {copying}  (write_tensor: kernel copy, waits on reads and on hashing)
      hashing     {hashing}  (sha256 threads: wall includes waiting for bytes)
      hash tail   {hash tail}  (close: the hash finishing after the last byte)
    other files   {other files}  (_write, shards included: index, config, tokenizer, hubbot.json)
    expected      {expected tensors}  (the model's tensor table, on a thread beside writing)
    verification  {verification}  (output headers against that table)
    rename        {rename}
    writeback     {writeback}  (the sync after the prune)"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dtype", nargs="+", choices=["mxfp4", "bf16"], default=["mxfp4", "bf16"])
    parser.add_argument("--cache", nargs="+", choices=["cold", "warm"], default=["cold", "warm"])
    parser.add_argument("--base", choices=["cache", "plain"], default="cache")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--max-shard-gib",
        type=float,
        default=None,
        help="output shard limit (the manifest's output.max_shard_bytes; default: the "
        "pruner's 5 GiB). Each shard is hashed on its own thread, so on many cores the "
        "largest shard's sha256 bounds the prune: smaller shards let more hash at once",
    )
    args = parser.parse_args()

    with work_folder(args.workdir, "prune-bench-") as work:
        base = prepare_base(work, args.layers, args.base)
        rng = random.Random(0)
        keep = {layer: sorted(rng.sample(range(EXPERTS), KEPT)) for layer in range(args.layers)}
        size, cpus = real_layout_bytes(args.layers), os.cpu_count()
        print(f"base: {args.layers} layers, {size:,} tensor bytes, {base}")
        print(f"keep: {KEPT} of {EXPERTS} experts per layer; runs: {args.runs}; cpus: {cpus}")
        print(f"free page reporting: {page_reporting()}")
        shard_bytes = int(args.max_shard_gib * 2**30) if args.max_shard_gib else None
        if shard_bytes:
            print(f"output shards: at most {args.max_shard_gib} GiB")
        for out_format in args.dtype:
            for cache in args.cache:
                measure(work, base, keep, out_format, cache, args.runs, shard_bytes)


def page_reporting() -> str:
    """Whether this machine hands freed pages back to its host (virtio-balloon), and from
    which block order: the figures depend on it (see the module's docstring)."""
    path = Path("/sys/module/page_reporting/parameters/page_reporting_order")
    try:
        order = int(path.read_text())
    except (OSError, ValueError):
        return "none (no page_reporting module)"
    state = "off" if order > 10 else "on"
    return f"{state} (page_reporting_order {order})"


def prepare_base(work: Path, layers: int, kind: str) -> Path:
    """The checkpoint (written once per layer count), as a cache snapshot or a plain folder."""
    raw = work / f"raw-{layers}"
    if not (raw / "config.json").is_file():
        start = time.perf_counter()
        write_real_layout(raw, num_layers=layers)
        print(f"wrote the base in {time.perf_counter() - start:.1f} s")
    folder = work / f"{kind}-{layers}"
    if folder.is_dir() and all((folder / p.name).exists() for p in raw.iterdir()):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    blobs = work / "blobs"
    blobs.mkdir(exist_ok=True)
    folder.mkdir()
    for path in sorted(raw.iterdir()):
        if kind == "plain":
            os.link(path, folder / path.name)
            continue
        digest = sha256_of(path)
        blob = blobs / digest
        if not blob.exists():
            os.link(path, blob)
        (folder / path.name).symlink_to(blob)
    return folder


def measure(
    work: Path,
    base: Path,
    keep: dict[int, list[int]],
    out_format: str,
    cache: str,
    runs: int,
    shard_bytes: int | None = None,
) -> None:
    dtype = "source" if out_format == "mxfp4" else "bf16"
    out, copy = work / f"out-{out_format}", work / f"copy-{out_format}"
    prune_s, cp_s, prune_sync, cp_sync, rss, disk_read, counts = [], [], [], [], [], [], {}
    phase_runs: list[dict[str, tuple[float, float, int]]] = []
    maxrss: list[int] = []
    for _ in range(runs):
        shutil.rmtree(out, ignore_errors=True)
        settle(work, read_ranges(base, keep) if cache == "warm" else [])
        seconds, peak, counts = run_child(base, out, dtype, keep, shard_bytes)
        prune_s.append(seconds)
        writeback = timed(os.sync)
        prune_sync.append(seconds + writeback)
        phase_runs.append(
            {
                **counts["phases"],
                "imports": (counts["import"], 0.0, 1),
                "writeback": (writeback, 0.0, 1),
            }
        )
        rss.append(peak)
        maxrss.append(counts["maxrss"])
        disk_read.append(counts["disk_read"])
        shutil.rmtree(copy, ignore_errors=True)
        settle(work, whole_files(out) if cache == "warm" else [])
        cp_s.append(timed(lambda: subprocess.run(["cp", "-r", str(out), str(copy)], check=True)))
        cp_sync.append(cp_s[-1] + timed(os.sync))
        shutil.rmtree(copy)
    settle(work, whole_files(out))
    start = time.perf_counter()
    for path in sorted(out.iterdir()):
        sha256_of(path)
    hash_s = time.perf_counter() - start
    shutil.rmtree(out)

    prune_m, cp_m = statistics.median(prune_s), statistics.median(cp_s)
    ratios = [a / b for a, b in zip(prune_s, cp_s, strict=True)]
    print(f"\n{out_format} out, {cache} cache ({counts['written']:,} bytes written)")
    print(f"  prune wall   median {prune_m:7.2f} s   runs {fmt(prune_s)}")
    print(f"  cp -r        median {cp_m:7.2f} s   runs {fmt(cp_s)}")
    print(f"  ratio        {prune_m / cp_m:.2f}  (goal <= 1.25; per run {fmt(ratios)})")
    synced = statistics.median(prune_sync) / statistics.median(cp_sync)
    print(f"  + sync       prune {fmt(prune_sync)} s, cp {fmt(cp_sync)} s; ratio {synced:.2f}")
    print(f"  sha256 only  {hash_s:7.2f} s   (one thread, output files from the page cache)")
    print(f"  peak RSS     {max(rss) / 2**20:7.0f} MiB  runs {fmt([r / 2**20 for r in rss], 0)}")
    print(f"  (wait4 ru_maxrss {max(maxrss) / 2**20:.0f} MiB: the parent's pages before exec too)")
    print(f"  read/written {counts['read'] / counts['written']:.3f}  ({counts['read']:,} read)")
    disk = statistics.median(disk_read) / counts["written"]
    print(f"  disk reads   {disk:.3f} of bytes written (the kernel's count: readahead included)")
    print(f"  load average {os.getloadavg()[0]:.1f} (1 min; {os.cpu_count()} cpus)")
    print(
        PHASES.format(
            heavy=counts["heavy"] or "neither torch nor transformers", **phase_figures(phase_runs)
        )
    )


def phase_figures(runs: list[dict[str, tuple[float, float, int]]]) -> dict[str, str]:
    """Median wall and CPU seconds of each phase over the runs, as text."""
    names = {name for run in runs for name in run}
    figures = {}
    for name in names:
        got = [run.get(name, (0.0, 0.0, 0)) for run in runs]
        wall = statistics.median(g[0] for g in got)
        cpu = statistics.median(g[1] for g in got)
        calls = max(g[2] for g in got)
        figures[name] = f"{wall:7.2f} / {cpu:6.2f} x{calls}"
    placeholders = ["headers", "writing", "copying", "hashing", "hash tail", "other files"]
    placeholders += ["expected tensors", "verification", "rename"]
    for name in placeholders:
        figures.setdefault(name, "      -")
    return figures


def whole_files(folder: Path) -> list[Range]:
    return [whole_file(p) for p in sorted(folder.iterdir()) if p.is_file()]


def read_ranges(base: Path, keep: dict[int, list[int]]) -> list[Range]:
    """What pruning `base` to `keep` reads: headers, and every tensor but dropped experts."""
    ckpt = open_checkpoint(base)
    ranges = [
        (shard, 0, min(t.start for t in ckpt.tensors.values() if t.file == shard))
        for shard in ckpt.shards
    ]
    for name, t in sorted(ckpt.tensors.items(), key=lambda item: (item[1].file, item[1].start)):
        layer = EXPERT_TENSOR.match(name)
        if layer is None:
            ranges.append((t.file, t.start, t.end))
            continue
        row = t.nbytes // t.shape[0]
        ranges += [
            (t.file, t.start + e * row, t.start + (e + 1) * row) for e in keep[int(layer[1])]
        ]
    return ranges


def run_child(
    base: Path, out: Path, dtype: str, keep: dict[int, list[int]], shard_bytes: int | None = None
) -> tuple[float, int, dict]:
    """Prune in a child process; its `prune_checkpoint` seconds, peak RSS (bytes), counts."""
    argv = [sys.executable, "-c", CHILD, str(base), str(out), dtype, json.dumps(keep)]
    argv += [str(shard_bytes)] if shard_bytes else []
    with tempfile.TemporaryFile("w+") as stdout:
        proc = subprocess.Popen(argv, stdout=stdout)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise SystemExit(f"prune failed with exit code {proc.returncode}")
        stdout.seek(0)
        result = json.loads(stdout.read().strip().splitlines()[-1])
    result["maxrss"] = usage.ru_maxrss * 1024
    return result["seconds"], result["hwm"], result


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def fmt(values: list[float], digits: int = 2) -> str:
    return " ".join(f"{v:.{digits}f}" for v in values)


if __name__ == "__main__":
    main()
