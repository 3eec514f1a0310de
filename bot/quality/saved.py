"""Figures saved by `hubbot eval --save`, reused by `plan` and `matrix` while current.

A release measured once (on a GPU runner, say) need not be measured again to know which
variants the floor holds back, nor by each job that builds one of its variants. Each
variant's figures are saved with the weights digest they were measured for
(`bot.desired.desired_digests`: kept experts, base revision, evaluation text and settings);
a figure whose digest no longer matches the manifest is stale and left out, so the
variant is measured when it is next built.

The saved figures also keep family tables current: each card shows every expert count of
its domain, so when the manifest gains (or loses) a count, `family_change` says how the
published siblings' tables differ, and the card-only update gives them the saved figures.

Example:
    >>> save_quality(Path("quality.json"), manifest, evaluate_release(manifest))  # doctest: +SKIP
    >>> current_points(Path("quality.json"), manifest)["math-4"].domain_text.kl  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from bot.desired import desired_digests
from bot.errors import InputError
from bot.manifest import Manifest, Variant
from bot.provenance import Quality, QualityPoint
from bot.quality.release import ReleaseQuality, evaluation_enabled, release_record
from bot.selection.select import select_experts


class SavedQuality(BaseModel):
    """The file: one run's record and, per variant, the weights digest it was measured for."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    quality: Quality
    weights: dict[str, str]


def _weights_digest(manifest: Manifest, variant: Variant) -> str:
    return desired_digests(manifest, variant, select_experts(manifest, variant)).weights


def save_quality(path: Path, manifest: Manifest, quality: ReleaseQuality) -> Path:
    """Write the run's figures to `path` (JSON)."""
    saved = SavedQuality(
        quality=release_record(manifest, quality),
        weights={v.id: _weights_digest(manifest, v) for v in quality.variants},
    )
    path.write_text(saved.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path


def current_points(path: Path, manifest: Manifest) -> dict[str, QualityPoint]:
    """The saved figures of the manifest's variants whose weights digest still matches."""
    return _current(_read(path), manifest)


def current_record(path: Path, manifest: Manifest) -> Quality:
    """The saved run as a `hubbot.json` quality record, its family cut to current figures."""
    saved = _read(path)
    current = _current(saved, manifest)
    family = [p for p in saved.quality.family if p.variant in current]
    return saved.quality.model_copy(update={"family": family})


def _read(path: Path) -> SavedQuality:
    try:
        return SavedQuality.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise InputError(f"{path}: cannot read saved quality figures: {exc.strerror}") from None
    except ValueError as exc:
        first = " ".join(str(exc).splitlines()[:3])
        raise InputError(f"{path}: not a file of saved quality figures: {first}") from None


def _current(saved: SavedQuality, manifest: Manifest) -> dict[str, QualityPoint]:
    points = {}
    for variant in manifest.variants:
        point = saved.quality.point(variant.id)
        digest = saved.weights.get(variant.id)
        if point is not None and digest == _weights_digest(manifest, variant):
            points[variant.id] = point
    return points


@dataclass(frozen=True)
class FamilyChange:
    """How a published card's family table differs from the manifest's counts of its domain.

    `measured`: the figures given cover every count of the domain, so the card can be
    brought up to date from them (a card-only update); otherwise `reason` says how.
    """

    added: tuple[int, ...]
    removed: tuple[int, ...]
    measured: bool

    @property
    def words(self) -> str:
        """`+1 count (6)`, `+2 counts (6, 8), -1 count (4)`."""
        parts = []
        for sign, counts in (("+", self.added), ("-", self.removed)):
            if counts:
                listed = ", ".join(str(c) for c in counts)
                parts.append(f"{sign}{len(counts)} count{'s' * (len(counts) > 1)} ({listed})")
        return ", ".join(parts)

    @property
    def reason(self) -> str:
        if self.measured:
            return f"family table: {self.words}"
        return (
            f"the family table is behind ({self.words}): measure with "
            "`hubbot eval --save F`, then pass `--quality F` for a card-only update"
        )


def family_change(
    published: Quality | None,
    manifest: Manifest,
    variant: Variant,
    points: Mapping[str, QualityPoint] | None,
) -> FamilyChange | None:
    """How `variant`'s published figures (`published`) list its domain's expert counts
    against the manifest, or None when they list the same counts (or record no figures).

    `points` (current figures by variant id) make the change `measured` when they hold
    every variant of the domain. Only the counts are compared, never the figures: figures
    measured again on another device do not make every card stale.
    """
    if published is None or not evaluation_enabled(manifest):
        return None
    domain = [v for v in manifest.variants if v.domain == variant.domain]
    wanted = {v.experts for v in domain}
    shown = {p.experts for p in published.family if p.domain == variant.domain}
    if wanted == shown:
        return None
    measured = points is not None and all(v.id in points for v in domain)
    return FamilyChange(tuple(sorted(wanted - shown)), tuple(sorted(shown - wanted)), measured)
