"""What a variant's repo should hold, computed from the manifest alone.

Planning compares these values with what a repo holds; the build records them in the
`hubbot.json` it writes. `desired_digests` splits the repo in two: `weights` covers
everything that needs the model run (base revision, output format, kept experts, example
prompts, evaluation settings), `card` everything that only changes the card (template,
release text, tool version). `release_info` is the manifest text a card shows. Nothing here
builds or loads a model, so a plan never imports the builder.

Example:
    >>> desired_digests(manifest, variant, select_experts(manifest, variant))  # doctest: +SKIP
    Digests(weights='3f1c...', card='9ab2...')
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from bot import __version__
from bot.manifest import Manifest, Variant
from bot.provenance import Digests, DomainInfo, ReleaseInfo, SelectionRecord
from bot.quality.release import evaluation_enabled, settings

# Bump when the pruner's output for the same inputs changes (forces rebuilds).
WEIGHTS_FORMAT = 1


def digest(value: Any) -> str:
    """SHA-256 of `value`'s canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def manifest_entry(manifest: Manifest, variant: Variant) -> dict[str, Any]:
    """Everything the manifest says about one variant, as plain data."""
    spec = manifest.spec
    return {
        "base": spec.base.model_dump(mode="json"),
        "output": spec.output.model_dump(mode="json"),
        "domain": manifest.domain(variant.domain).model_dump(mode="json", by_alias=True),
        "experts": variant.experts,
        "repo_id": variant.repo_id,
        "card": spec.card.model_dump(mode="json"),
        "generation": spec.generation.model_dump(mode="json"),
    }


def release_info(manifest: Manifest, variant: Variant) -> ReleaseInfo:
    """The manifest text a card needs, recorded in `hubbot.json`."""
    spec, domain = manifest.spec, manifest.domain(variant.domain)
    # Folder and file name only: the same wherever the command runs from.
    shown = f"{manifest.path.resolve().parent.name}/{manifest.path.name}"
    return ReleaseInfo(
        base_model=spec.base.repo,
        domain=DomainInfo(id=domain.id, title=domain.title, description=domain.description),
        license=spec.card.license,
        license_name=spec.card.license_name,
        license_link=spec.card.license_link,
        language=list(spec.card.language),
        tags=list(spec.card.tags),
        datasets=list(spec.card.datasets),
        statistics_credit=spec.card.statistics_credit,
        citation=spec.card.citation,
        rebuild_note=spec.card.rebuild_note,
        manifest=shown,
        generation=spec.generation.model_dump(mode="json"),
        quality_floor=spec.quality,
    )


def template_path(manifest: Manifest) -> Path:
    return manifest.resolve(manifest.spec.card.template)


def desired_digests(manifest: Manifest, variant: Variant, selection: SelectionRecord) -> Digests:
    """What the repo should be: `weights` covers everything that needs the model run."""
    spec = manifest.spec
    weights = {
        "format": WEIGHTS_FORMAT,
        "base": {"repo": spec.base.repo, "revision": spec.base.revision},
        "output": spec.output.model_dump(mode="json"),
        "kept_experts": selection.kept_experts,
        "generation": spec.generation.model_dump(mode="json"),
        "examples": list(manifest.domain(variant.domain).examples),
    }
    evaluation = evaluation_entry(manifest, variant)
    if evaluation is not None:  # absent: the digests of releases that measure nothing stay
        weights["evaluation"] = evaluation
    card = {
        "tool": __version__,
        "template": hashlib.sha256(template_path(manifest).read_bytes()).hexdigest(),
        "release": release_info(manifest, variant).model_dump(mode="json"),
        "repo_id": variant.repo_id,
        "selection": selection.model_dump(mode="json"),
    }
    return Digests(weights=digest(weights), card=digest(card))


def evaluation_entry(manifest: Manifest, variant: Variant) -> dict[str, Any] | None:
    """The evaluation settings and texts that the variant's figures depend on."""
    if not evaluation_enabled(manifest):
        return None
    domain = manifest.domain(variant.domain)
    return {
        "settings": settings(manifest).model_dump(mode="json"),
        "domain": domain.evaluation.model_dump(mode="json") if domain.evaluation else None,
    }
