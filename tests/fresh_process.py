"""Run `hubbot` commands in a fresh Python process and report which heavy modules they load.

Startup cost is imports: a command that never needs a model must not import torch or
transformers. The commands run through `bot.cli.cli` in one child process, one after the
other; the child prints their exit codes and the heavy modules in `sys.modules` after them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "transformers")
ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import json, sys
from bot.cli import cli
codes = []
for args in json.loads(sys.argv[1]):
    try:
        cli(args, standalone_mode=False)
        codes.append(0)
    except SystemExit as exc:
        codes.append(exc.code)
heavy = sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)
print("\\n" + json.dumps({"codes": codes, "heavy": heavy}))
"""


def heavy_imports(
    *commands: list[str], modules: tuple[str, ...] = HEAVY
) -> tuple[list[int], list[str]]:
    """Exit codes of `commands` run in one fresh process, and which of `modules` (by default
    the heavy ones) they loaded."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(commands), json.dumps(modules)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["codes"], result["heavy"]
