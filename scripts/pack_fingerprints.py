"""Pack the public GPT-OSS expert fingerprint summaries into hubbot's compact copy.

Reads a folder in the study's raw layout (`summaries/map.json` + the summary JSON files),
writes `index.json`, `entries.safetensors.xz` and the study's LICENSE into
`bot/data/fingerprints/` (its NOTICE is written by hand), then reads the result back and
checks that every domain of `domain_subsets.json` (and `*`) gives bit-identical statistics
from both forms. Running it again on the same data rewrites the same bytes.

Usage:
    python scripts/pack_fingerprints.py [RAW_FOLDER] [--out bot/data/fingerprints]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from bot.selection.fingerprints import PACKED_DIR, packed_table, raw_table, write_packed

DEFAULT_RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "expert-fingerprints"
NUM_EXPERTS = 32
"""Experts per layer of openai/gpt-oss-20b, the model the study measured."""
NOTICE = (
    "GPT-OSS MoE Expert Fingerprinting summaries (Aman Priyanshu and Supriti Vijay, 2025), "
    "Apache-2.0, repacked by hubbot; see NOTICE"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", nargs="?", type=Path, default=DEFAULT_RAW)
    parser.add_argument("--out", type=Path, default=PACKED_DIR)
    args = parser.parse_args(argv)
    raw = raw_table(args.raw.resolve(), NUM_EXPERTS)
    write_packed(raw, args.out, notice=NOTICE)
    license_file = args.raw / "LICENSE"
    if license_file.is_file():
        shutil.copyfile(license_file, args.out / "LICENSE")
    packed = packed_table.__wrapped__(args.out)
    domains = {"*": "*"}
    subsets_file = args.raw / "domain_subsets.json"
    if subsets_file.is_file():
        domains.update(json.loads(subsets_file.read_text(encoding="utf-8")))
    for name, subsets in domains.items():
        a, b = raw.statistics(subsets), packed.statistics(subsets)
        same = a.digest == b.digest and all(
            np.array_equal(getattr(a, n), getattr(b, n))
            for n in ("selections", "mass", "weight", "tie_rank")
        )
        if not same:
            print(f"mismatch for domain {name!r}", file=sys.stderr)
            return 1
    size = sum(p.stat().st_size for p in args.out.iterdir() if p.is_file())
    print(
        f"packed {len(raw.files)} summary files, {len(raw.expert)} entries into {args.out} "
        f"({size / 1e6:.1f} MB); {len(domains)} domains check out"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
