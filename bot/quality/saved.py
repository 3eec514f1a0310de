"""Figures saved by `hubbot eval --save`, reused by `plan` and `matrix` while current.

A release measured once (on a GPU runner, say) need not be measured again to know which
variants the floor holds back, nor by each job that builds one of its variants. Each
variant's figures are saved with the weights digest they were measured for
(`bot.desired.desired_digests`: kept experts, base revision, evaluation text and settings);
a figure whose digest no longer matches the manifest is stale and left out, so the
variant is measured when it is next built.

Example:
    >>> save_quality(Path("quality.json"), manifest, evaluate_release(manifest))  # doctest: +SKIP
    >>> current_points(Path("quality.json"), manifest)["math-4"].domain_text.kl  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from bot.desired import desired_digests
from bot.errors import InputError
from bot.manifest import Manifest, Variant
from bot.provenance import Quality, QualityPoint
from bot.quality.release import ReleaseQuality, release_record
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
