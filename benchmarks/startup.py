"""Start-up time and peak memory of the commands that need no model, vs `hubbot --help`.

Each command runs in a fresh Python process (as on a CI runner or a terminal), several
times, alternating; the baseline `hubbot --help` (the interpreter plus click and our CLI
module) runs in the same loop. Prints, per command, the median wall time and peak RSS
(the child's own `VmHWM`) and their ratio to the baseline's.

Goals (issue #15): `validate` <= 1 s and <= 150 MB; `plan` of the 232 seed variants <= 2 s.

Usage:
    python benchmarks/startup.py [--runs 5] [--manifest manifests/gpt-oss-20b.yaml]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The child reports its own peak RSS (VmHWM) on exit: `wait4`'s ru_maxrss would include
# this process's pages from before the child's exec.
ENTRY = (
    "import atexit, sys\n"
    "def hwm():\n"
    "    status = open('/proc/self/status').read()\n"
    "    sys.stderr.write('\\nVmHWM ' + status.split('VmHWM:')[1].split()[0] + '\\n')\n"
    "atexit.register(hwm)\n"
    "from bot.cli import main; main()"
)


def measure(args: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS bytes of one `hubbot ARGS` in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", ENTRY, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert child.stderr is not None
    err = child.stderr.read()
    _, status, _ = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"hubbot {' '.join(args)} failed:\n{err.decode(errors='replace')}")
    return wall, int(err.decode().rsplit("VmHWM ", 1)[1].split()[0]) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--manifest", default="manifests/gpt-oss-20b.yaml")
    opts = parser.parse_args()
    commands = {
        "--help (baseline)": ["--help"],
        "validate": ["validate", opts.manifest],
        "plan": ["plan", opts.manifest],
        "plan --json": ["plan", opts.manifest, "--json"],
        "matrix --all --group domain": ["matrix", opts.manifest, "--all", "--group", "domain"],
    }
    figures: dict[str, list[tuple[float, int]]] = {name: [] for name in commands}
    measure(["--help"])  # warm the file cache and byte-code once, outside the figures
    for _ in range(opts.runs):
        for name, args in commands.items():
            figures[name].append(measure(args))
    base_wall = statistics.median(w for w, _ in figures["--help (baseline)"])
    base_rss = statistics.median(r for _, r in figures["--help (baseline)"])
    print(f"{opts.runs} runs each, fresh process per run, medians; {opts.manifest}")
    print(f"{'command':<30} {'wall':>8} {'x help':>7} {'peak RSS':>10} {'x help':>7}")
    for name, runs in figures.items():
        wall = statistics.median(w for w, _ in runs)
        rss = statistics.median(r for _, r in runs)
        print(
            f"{name:<30} {wall:>7.3f}s {wall / base_wall:>7.1f} "
            f"{rss / 1e6:>8.1f}MB {rss / base_rss:>7.1f}"
        )


if __name__ == "__main__":
    main()
