"""`hubbot eval`'s output: the figures as a table for people and as JSON for CI."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from bot.manifest import Manifest
from bot.provenance import TextFigures
from bot.quality.gate import shortfall
from bot.quality.release import ReleaseQuality


def quality_json(manifest: Manifest, quality: ReleaseQuality) -> dict[str, Any]:
    """Settings, text sets and one entry per variant (with `held`: why it is below the floor)."""
    floor = manifest.spec.quality
    rows = []
    for variant in quality.variants:
        point = quality.point(variant)
        rows.append(
            {
                **point.model_dump(mode="json"),
                "repo_id": variant.repo_id,
                "held": shortfall(point, floor),
            }
        )
    return {
        "device": quality.device,
        "dtype": quality.dtype,
        "attention": quality.attention,
        "versions": quality.versions,
        "settings": quality.settings.model_dump(mode="json", exclude={"general"}),
        "floor": floor.model_dump(mode="json") if floor else None,
        "texts": {
            name: {
                "source": s.source,
                "texts": s.texts,
                "tokens": s.tokens,
                "text_digest": s.text_digest,
                "tokens_digest": s.tokens_digest,
            }
            for name, s in quality.sets.items()
        },
        "variants": rows,
    }


def quality_table(manifest: Manifest, quality: ReleaseQuality) -> Table:
    """One row per variant: figures on its domain's text and on the general text."""
    floor = manifest.spec.quality
    table = Table(
        title=f"{manifest.path.name}: {len(quality.variants)} variants against the base "
        f"model, on {quality.device} ({quality.dtype}, {quality.attention} attention)",
        caption="KL: mean KL(base || variant), nats/token; top-1: agreement with the base's "
        "first choice; ppl: perplexity. Closeness to the base, not task accuracy.",
    )
    table.add_column("variant", no_wrap=True)
    table.add_column("experts", justify="right")
    table.add_column("KL\ndomain", justify="right")
    table.add_column("top-1\ndomain", justify="right")
    table.add_column("ppl\ndomain", justify="right")
    table.add_column("base ppl\ndomain", justify="right")
    table.add_column("KL\ngeneral", justify="right")
    table.add_column("top-1\ngeneral", justify="right")
    if floor is not None:
        table.add_column("floor")
    for variant in quality.variants:
        point = quality.point(variant)
        cells = [variant.id, str(variant.experts)]
        cells += _cells(point.domain_text, perplexity=True)
        cells += _cells(point.general_text, perplexity=False)
        if floor is not None:
            held = shortfall(point, floor)
            cells.append(f"[red]held: {held}[/red]" if held else "ok")
        table.add_row(*cells)
    return table


def _cells(figures: TextFigures | None, *, perplexity: bool) -> list[str]:
    if figures is None:
        return ["-"] * (4 if perplexity else 2)
    cells = [f"{figures.kl:.4f}", f"{100 * figures.top1:.1f}%"]
    if perplexity:
        cells += [f"{figures.perplexity:.1f}", f"{figures.base_perplexity:.1f}"]
    return cells
