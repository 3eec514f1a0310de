"""Measure the shipped tiny MoE model on CPU: the figures its README and tests rest on.

- held-out arithmetic: greedy answers to every held-out sum and difference, exact matches;
- held-out perplexity of each text domain (the shipped held-out texts, first 256 tokens);
- routing: per layer, the overlap of the k most-selected experts between domains
  (calibration on `bot.fixtures.trained.calibration_texts`);
- pruning: arithmetic accuracy (on --problems held-out questions) after keeping N experts
  per layer chosen by each domain's calibration, and by `inverse` of arithmetic's.

Usage:
    python scripts/measure_tiny_moe.py [--counts 4,8] [--problems 200] [--out figures.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.examples import load_model
from bot.fixtures.trained import (
    DOMAINS,
    TEXT_DOMAINS,
    arithmetic_accuracy,
    calibration_texts,
    held_out_problems,
    held_out_texts,
    perplexity,
    top_k_overlap,
    trained_model_folder,
)
from bot.prune import prune_checkpoint
from bot.selection.calibrate import calibrate
from bot.selection.strategies import final_orders, ranking


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--counts", default="4,8")
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    folder = args.model or trained_model_folder()
    started = time.perf_counter()
    base = load_model(folder, device="cpu")
    figures: dict = {"model": str(folder)}
    every = held_out_problems()
    figures["heldout_arithmetic"] = {
        "problems": len(every),
        "accuracy": round(arithmetic_accuracy(base, every), 4),
    }
    print(json.dumps(figures["heldout_arithmetic"]), flush=True)
    figures["perplexity"] = {d: round(perplexity(base, held_out_texts(d)), 2) for d in TEXT_DOMAINS}
    print(json.dumps(figures["perplexity"]), flush=True)
    stats = {
        d: calibrate(base.model, base.tokenizer, calibration_texts(d), progress=False)
        for d in DOMAINS
    }
    figures["top_k_overlap"] = {
        f"k={k}": {
            f"{a}/{b}": [round(x, 2) for x in top_k_overlap(stats[a], stats[b], k)]
            for i, a in enumerate(DOMAINS)
            for b in DOMAINS[i + 1 :]
        }
        for k in (2, 4)
    }
    print(json.dumps(figures["top_k_overlap"]), flush=True)
    orders = {
        d: final_orders(ranking(s.frequency(), s.tie_rank), s.num_experts).tolist()
        for d, s in stats.items()
    }
    orders["inverse"] = [o[::-1] for o in orders["arithmetic"]]
    problems = held_out_problems(args.problems)
    figures["pruned_arithmetic_accuracy"] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for count in (int(c) for c in args.counts.split(",")):
            row = {}
            for name, order in orders.items():
                keep = {layer: sorted(o[:count]) for layer, o in enumerate(order)}
                dst = Path(tmp) / f"{name}-{count}"
                prune_checkpoint(folder, dst, keep)
                row[name] = round(arithmetic_accuracy(load_model(dst, device="cpu"), problems), 3)
            figures["pruned_arithmetic_accuracy"][str(count)] = row
            print(json.dumps({count: row}), flush=True)
    figures["seconds"] = round(time.perf_counter() - started, 1)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
