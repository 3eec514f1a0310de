"""Build one variant into a staged repo folder, ready to publish.

    Variant --select--> SelectionRecord --prune--> folder --stats, examples--> hubbot.json
            --card--> README.md + experts.png

The staged folder holds exactly what the repo should hold. Digests recorded in
`hubbot.json` let `plan` tell later whether the weights or only the card are stale. It is
built whole in a temporary folder and then put in place (`bot.folders`): a failed build
leaves the previous `out`, or none, and an `out` hubbot did not write is never replaced.

Example:
    >>> manifest = load_manifest("manifests/demo.yaml")                 # doctest: +SKIP
    >>> build_variant(manifest, manifest.variant("general-4"), Path("out"))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot import __version__
from bot.folders import check_disjoint, claim_destination, new_partial, replace_folder
from bot.manifest import Manifest, Variant
from bot.provenance import (
    BaseRef,
    Digests,
    DomainInfo,
    Provenance,
    ReleaseInfo,
    SelectionRecord,
    VariantRef,
    read_provenance,
    write_provenance,
)

# Bump when the pruner's output for the same inputs changes (forces rebuilds).
WEIGHTS_FORMAT = 1


@dataclass(frozen=True)
class BuildResult:
    """A staged repo folder and its provenance."""

    variant: Variant
    folder: Path
    provenance: Provenance


def endpoint_for(manifest: Manifest) -> str | None:
    """The Hub endpoint: `HF_ENDPOINT` wins over the manifest's `hub.endpoint`."""
    return os.environ.get("HF_ENDPOINT") or manifest.spec.hub.endpoint


def _digest(value: Any) -> str:
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
    return Digests(weights=_digest(weights), card=_digest(card))


def evaluation_entry(manifest: Manifest, variant: Variant) -> dict[str, Any] | None:
    """The evaluation settings and texts that the variant's figures depend on."""
    from bot.quality.release import evaluation_enabled, settings

    if not evaluation_enabled(manifest):
        return None
    domain = manifest.domain(variant.domain)
    return {
        "settings": settings(manifest).model_dump(mode="json"),
        "domain": domain.evaluation.model_dump(mode="json") if domain.evaluation else None,
    }


def build_variant(
    manifest: Manifest,
    variant: Variant,
    out: Path,
    *,
    base_folder: Path | None = None,
    device: str | None = None,
    examples: bool = True,
    evaluate: bool = True,
    saved_quality: Path | None = None,
    progress: bool = True,
) -> BuildResult:
    """Prune, run the examples, measure quality, and render the card of `variant` into `out`.

    The quality figures are those of the whole release, measured once per process (see
    `bot.quality.release.release_quality`), so that the card can show the family; or read
    from `saved_quality` (`hubbot eval --save`) where it holds current figures of `variant`.
    """
    from bot.card import write_card
    from bot.examples import run_examples
    from bot.prune import prune_checkpoint
    from bot.quality.release import evaluation_enabled, quality_record, release_quality
    from bot.quality.saved import current_record
    from bot.selection.select import select_experts
    from bot.stats import model_stats

    spec = manifest.spec
    claim = claim_destination(out)  # fail before any work if `out` is not ours to replace
    base = base_folder or fetch_manifest_base(manifest)
    check_disjoint(base, out)
    selection = select_experts(manifest, variant)
    keep = {int(layer): experts for layer, experts in selection.kept_experts.items()}
    out = claim.path
    staging = new_partial(out, "build")  # everything is staged here, then put in place whole
    try:
        folder = staging / "repo"
        pruned = prune_checkpoint(
            base,
            folder,
            keep,
            dtype="bf16" if spec.output.format == "bf16" else "source",
            max_shard_bytes=spec.output.max_shard_bytes,
            provenance={
                "repo": spec.base.repo,
                "revision": spec.base.revision,
                "selection": selection.model_dump(mode="json"),
            },
        )
        record = read_provenance(folder)
        run = None
        if examples:
            domain = manifest.domain(variant.domain)
            run = run_examples(
                folder, list(domain.examples), spec.generation, device=device, progress=progress
            )
        quality = None
        if evaluate and evaluation_enabled(manifest):
            if saved_quality is not None:
                quality = current_record(saved_quality, manifest)
            if quality is None or quality.point(variant.id) is None:
                measured = release_quality(manifest, base, device=device, progress=progress)
                quality = quality_record(manifest, measured, variant)
        record = record.model_copy(
            update={
                "variant": VariantRef(
                    id=variant.id,
                    domain=variant.domain,
                    experts=variant.experts,
                    repo_id=variant.repo_id,
                ),
                "manifest_digest": _digest(manifest_entry(manifest, variant)),
                "digests": desired_digests(manifest, variant, selection),
                "base": BaseRef(
                    repo=spec.base.repo, revision=spec.base.revision, files=record.base.files
                ),
                "selection": selection,
                "stats": model_stats(folder, base_config=manifest.base_config),
                "examples": run,
                "quality": quality,
                "release": release_info(manifest, variant),
            }
        )
        record = Provenance.model_validate(record.model_dump())
        written = write_card(folder, record, template_path(manifest))
        # the card's files are listed too: a later build may replace only what hubbot wrote
        card = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in written}
        record = record.model_copy(update={"files": dict(sorted({**pruned.files, **card}.items()))})
        write_provenance(folder, record)
        replace_folder(folder, claim)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BuildResult(variant=variant, folder=out, provenance=record)


def fetch_manifest_base(manifest: Manifest) -> Path:
    """The base checkpoint of `manifest`: its local folder, or a download of the pinned repo."""
    from bot.hub.download import fetch_base

    base = manifest.spec.base
    return fetch_base(
        repo=base.repo,
        path=manifest.resolve(base.path) if base.path else None,
        revision=base.revision,
        endpoint=endpoint_for(manifest),
    )
