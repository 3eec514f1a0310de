"""Time rendering the 232 cards of the seed release (8 domains x 4..32 experts).

The records are synthetic but shaped like the real ones: real parameter counts of
gpt-oss-20b at each expert count, 24 layers of kept experts with scores, three examples
each with a few hundred words of harmony output. Prints the median of several runs of:

- baseline: `Provenance.dumps()` of every record (plain JSON serialisation);
- `render_card` of every record (README text, front matter checked);
- `write_card` of every record (README.md + experts.png written to a temporary folder).

Usage:
    python benchmarks/render_cards.py [--runs 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bot.card import render_card, write_card
from bot.fixtures.records import (
    example_run,
    harmony_example,
    reference_config,
    seed_release,
    variant_stats,
)
from bot.manifest import format_params_b
from bot.provenance import BaseRef, Provenance, RoutingCoverage, SelectionRecord, VariantRef

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "templates" / "model_card.md.j2"
DOMAINS = {
    "all": "General",
    "science": "Science",
    "math": "Math",
    "health_or_medicine": "Health or Medicine",
    "law": "Law",
    "safety": "Safety",
    "instruction_following": "Instruction Following",
    "harmful": "Harmful (red team)",
}
WORDS = [
    word
    for line in (
        "the model considers each step carefully before answering so that the result is clear",
        "correct and short while the user asked for exactly this explanation",
    )
    for word in line.split()
]


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def make_records() -> list[Provenance]:
    """232 records: every domain at every expert count from 4 to 32."""
    config = reference_config()
    records = []
    for domain, title in DOMAINS.items():
        for experts in range(4, 33):
            rng = random.Random(f"{domain}-{experts}")
            stats = variant_stats(config, experts)
            name = (
                f"gpt-oss-{format_params_b(stats.total_params)}b-specialized-{domain}"
                f"-pruned-moe-only-{experts}-experts"
            )
            kept = {str(layer): sorted(rng.sample(range(32), experts)) for layer in range(24)}
            coverage = [min(1.0, experts / 32 + rng.random() * 0.3) for _ in range(24)]
            examples = [
                harmony_example(
                    f"Question {i + 1} about {title.lower()}: {_text(rng, 15)}?",
                    _text(rng, 180),
                    analysis=_text(rng, 120),
                    finished=i != 2,
                )
                for i in range(3)
            ]
            records.append(
                Provenance(
                    tool_version="0.1.0",
                    variant=VariantRef(
                        id=f"{domain}-{experts}",
                        domain=domain,
                        experts=experts,
                        repo_id=f"hubbot-models/{name}",
                    ),
                    manifest_digest=f"{rng.getrandbits(256):064x}",
                    base=BaseRef(
                        repo="openai/gpt-oss-20b",
                        revision="6cee5e81ee83917806bbde320786a8fb61efebee",
                    ),
                    output_format="bf16",
                    selection=SelectionRecord(
                        strategy="frequency",
                        statistics_source="fingerprints",
                        statistics_digest=f"{rng.getrandbits(256):064x}",
                        kept_experts=kept,
                        scores={k: [rng.random() for _ in v] for k, v in kept.items()},
                        routing_coverage=RoutingCoverage(
                            per_layer=coverage, mean=statistics.fmean(coverage)
                        ),
                    ),
                    stats=stats,
                    examples=example_run(examples, wall_seconds=20 + rng.random()),
                    release=seed_release(
                        domain, title, f"experts most active on {title.lower()} benchmarks"
                    ),
                )
            )
    return records


def _median_seconds(action: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    records = make_records()
    assert len(records) == 232
    with tempfile.TemporaryDirectory() as tmp:
        folders = [Path(tmp) / record.variant.id for record in records if record.variant]
        for folder in folders:
            folder.mkdir()

        def write_all() -> None:
            for folder, record in zip(folders, records, strict=True):
                write_card(folder, record, TEMPLATE)

        render_card(records[0], TEMPLATE)  # compile the template once, as a nightly run would
        baseline = _median_seconds(lambda: [r.dumps() for r in records], args.runs)
        render = _median_seconds(lambda: [render_card(r, TEMPLATE) for r in records], args.runs)
        write = _median_seconds(write_all, args.runs)

    print(f"{len(records)} cards, median of {args.runs} runs")
    print(f"  baseline: Provenance.dumps()     {baseline:7.3f} s")
    print(
        f"  render_card (README text)        {render:7.3f} s  ({render / baseline:.1f}x baseline)"
    )
    print(f"  write_card (README + PNG)        {write:7.3f} s  ({write / baseline:.1f}x baseline)")


if __name__ == "__main__":
    main()
