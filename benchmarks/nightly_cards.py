"""Nightly card regeneration of the seed release against the local Hub.

The 232 variants of `manifests/gpt-oss-20b.yaml` are published to a fresh local server
from provenance files only (README.md, experts.png, hubbot.json; no weights): real repo
names, real kept experts from the shipped fingerprints, statistics from the real config,
synthetic example outputs. Then it measures `hubbot cards --regen`:

1. after a template change (one line added to a copy of the template);
2. again with no change (goal: 0 commits, at most 2 HTTP requests per variant).

For each: commits, LFS bytes uploaded, HTTP requests per variant, wall time; the median
of `--runs` runs of the unchanged pass, and its ratio to a baseline measured in the same
run (one `model_info` request per variant).

Usage:
    python benchmarks/nightly_cards.py [--runs 3] [--variants 232]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "manifests" / "gpt-oss-20b.yaml"


def _release_copy(folder: Path) -> Path:
    """A copy of the real manifest whose card template we may edit."""
    (folder / "manifests").mkdir(parents=True)
    (folder / "templates").mkdir()
    for name in ("gpt-oss-20b.yaml", "gpt-oss-20b.config.json"):
        shutil.copy(ROOT / "manifests" / name, folder / "manifests" / name)
    shutil.copy(ROOT / "templates" / "model_card.md.j2", folder / "templates")
    return folder / "manifests" / "gpt-oss-20b.yaml"


def _record(manifest, variant):  # type: ignore[no-untyped-def]
    from bot.desired import WEIGHTS_FORMAT, desired_digests, release_info
    from bot.fixtures.records import example_run, harmony_example, variant_stats
    from bot.provenance import BaseRef, Provenance, VariantRef
    from bot.selection.select import select_experts

    selection = select_experts(manifest, variant)
    prompts = manifest.domain(variant.domain).examples
    examples = [
        harmony_example(p, f"Answer {i} for {variant.id}.", analysis="Think.")
        for i, p in enumerate(prompts)
    ]
    settings = manifest.spec.generation.model_dump(mode="json")
    run = example_run(examples, settings=settings, wall_seconds=1.0)
    return Provenance(
        tool_version=f"bench-{WEIGHTS_FORMAT}",
        variant=VariantRef(
            id=variant.id, domain=variant.domain, experts=variant.experts, repo_id=variant.repo_id
        ),
        manifest_digest="0" * 64,
        digests=desired_digests(manifest, variant, selection),
        base=BaseRef(repo="openai/gpt-oss-20b", revision=manifest.spec.base.revision),
        output_format="bf16",
        selection=selection,
        stats=variant_stats(manifest.base_config, variant.experts),
        examples=run,
        release=release_info(manifest, variant),
    )


def _publish_cards(manifest, api, variants, scratch: Path) -> None:  # type: ignore[no-untyped-def]
    from bot.hub.publish import publish_folder
    from bot.release import card_files

    for variant in variants:
        folder = scratch / variant.id
        folder.mkdir()
        for name, data in card_files(manifest, variant, _record(manifest, variant)).items():
            (folder / name).write_bytes(data)
        publish_folder(api, variant.repo_id, folder, private=False, message=f"seed {variant.id}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--variants", type=int, default=232)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hubbot-nightly-") as tmp:
        work = Path(tmp)
        from bot.hub.clients import clients_pointed_at
        from bot.hub.publish import connect
        from bot.localhub.server import HubServer
        from bot.manifest import load_manifest

        manifest_path = _release_copy(work / "release")
        with (
            HubServer(work / "hub", tokens=["bench-token"]) as server,
            clients_pointed_at(server.endpoint, "bench-token", work / "hf-home"),
        ):
            api = connect(server.endpoint, "bench-token")
            manifest = load_manifest(manifest_path)
            variants = manifest.variants[: args.variants]
            started = time.perf_counter()
            (work / "seed").mkdir()
            _publish_cards(manifest, api, variants, work / "seed")
            print(f"seeded {len(variants)} repos in {time.perf_counter() - started:.1f} s")

            template = manifest_path.parent.parent / "templates" / "model_card.md.j2"
            template.write_text(template.read_text() + "\n<!-- regenerated -->\n")
            manifest = load_manifest(manifest_path)
            _report("after a template change", *_measure(manifest, api, server, variants))

            walls, baselines = [], []
            for _ in range(args.runs):
                last = _measure(manifest, api, server, variants)
                walls.append(last[-1])
                baselines.append(_baseline(api, server, variants))
            _report("no change (last run)", *last)
            base = statistics.median(baselines)
            median = statistics.median(walls)
            print(
                f"no change: median {median:.2f} s over {args.runs} runs; baseline (one "
                f"model_info per variant) {base:.2f} s; ratio {median / base:.2f}"
            )


def _measure(manifest, api, server, variants):  # type: ignore[no-untyped-def]
    from bot.release import refresh_card

    server.stats.reset()
    commits = sent = 0
    started = time.perf_counter()
    for variant in variants:
        result = refresh_card(manifest, api, variant)
        commits += 1 if result.commit else 0
        sent += result.bytes_uploaded
    wall = time.perf_counter() - started
    requests = server.stats.total
    return commits, sent, server.stats["lfs_upload"], requests / len(variants), wall


def _baseline(api, server, variants) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for variant in variants:
        api.model_info(variant.repo_id)
    return time.perf_counter() - started


def _report(
    label: str, commits: int, sent: int, lfs_puts: int, requests: float, wall: float
) -> None:
    print(
        f"{label}: {commits} commits, {sent:,} bytes committed, {lfs_puts} LFS uploads, "
        f"{requests:.2f} HTTP requests per variant, {wall:.2f} s"
    )


if __name__ == "__main__":
    main()
