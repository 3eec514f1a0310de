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
import shutil
from dataclasses import dataclass
from pathlib import Path

from bot.base import fetch_manifest_base
from bot.card import write_card
from bot.desired import desired_digests, digest, manifest_entry, release_info, template_path
from bot.folders import check_disjoint, claim_destination, new_partial, replace_folder
from bot.manifest import Manifest, Variant
from bot.model_stats import model_stats
from bot.provenance import Provenance, VariantRef, write_provenance
from bot.prune import Origin, prune_checkpoint
from bot.quality.release import evaluation_enabled, quality_record, release_quality
from bot.quality.saved import current_record
from bot.selection.select import select_experts


@dataclass(frozen=True)
class BuildResult:
    """A staged repo folder and its provenance."""

    variant: Variant
    folder: Path
    provenance: Provenance


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
    from bot.examples import run_examples  # torch loads when a variant is built, not on import

    spec = manifest.spec
    claim = claim_destination(out)  # fail before any work if `out` is not ours to replace
    base = base_folder or fetch_manifest_base(manifest)
    check_disjoint(base, out)
    selection = select_experts(manifest, variant)
    out = claim.path
    staging = new_partial(out, "build")  # everything is staged here, then put in place whole
    try:
        folder = staging / "repo"
        pruned = prune_checkpoint(
            base,
            folder,
            selection.keep(),
            dtype="bf16" if spec.output.format == "bf16" else "source",
            max_shard_bytes=spec.output.max_shard_bytes,
            origin=Origin(repo=spec.base.repo, revision=spec.base.revision, selection=selection),
            write_record=False,  # hubbot.json is written once, below, with everything in it
        )
        assert pruned.provenance is not None
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
        record = Provenance(
            tool_version=pruned.provenance.tool_version,
            variant=VariantRef(
                id=variant.id,
                domain=variant.domain,
                experts=variant.experts,
                repo_id=variant.repo_id,
            ),
            manifest_digest=digest(manifest_entry(manifest, variant)),
            digests=desired_digests(manifest, variant, selection),
            base=pruned.provenance.base,
            output_format=pruned.output_format,
            selection=selection,
            files=pruned.files,
            stats=model_stats(folder, base_config=manifest.base_config),
            examples=run,
            quality=quality,
            release=release_info(manifest, variant),
        )
        written = write_card(folder, record, template_path(manifest))
        # the card's files are listed too: a later build may replace only what hubbot wrote
        card = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in written}
        record = record.model_copy(update={"files": dict(sorted({**pruned.files, **card}.items()))})
        write_provenance(folder, record)
        replace_folder(folder, claim)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BuildResult(variant=variant, folder=out, provenance=record)
