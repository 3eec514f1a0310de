"""A whole release against the Hub: plan every variant, then carry the plan out.

`plan_release` asks each repo's `hubbot.json` what it holds (one request a variant) and
says what each needs; `publish_release` builds and commits what needs it, one commit per
variant; `regenerate_cards` re-renders every published card from its `hubbot.json`.

Example:
    >>> manifest = load_manifest("manifests/demo.yaml")   # doctest: +SKIP
    >>> [row.action for row in plan_release(manifest, connect())]  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi

from bot.build import (
    build_variant,
    desired_digests,
    fetch_manifest_base,
    release_info,
    template_path,
)
from bot.errors import HubbotError
from bot.folders import scratch_folder
from bot.hub.plan import Action, Plan, plan_variant
from bot.hub.publish import (
    PublishResult,
    ensure_collections,
    publish_folder,
    regenerate_card,
)
from bot.manifest import Manifest, Variant
from bot.provenance import Provenance
from bot.selection.select import select_experts


@dataclass(frozen=True)
class VariantPlan:
    """A variant, what it needs, and why."""

    variant: Variant
    action: Action
    reason: str


@dataclass(frozen=True)
class Outcome:
    """What publishing one variant did; `error` is set when it failed."""

    variant: Variant
    action: Action
    result: PublishResult | None
    error: str | None = None


def _chosen(manifest: Manifest, variant_ids: Iterable[str] | None) -> list[Variant]:
    if not variant_ids:
        return list(manifest.variants)
    return [manifest.variant(v) for v in variant_ids]


def plan_release(
    manifest: Manifest, api: HfApi, variant_ids: Iterable[str] | None = None
) -> list[VariantPlan]:
    """What every chosen variant needs, compared with what its repo holds."""
    rows = []
    for variant in _chosen(manifest, variant_ids):
        selection = select_experts(manifest, variant)
        plan: Plan = plan_variant(
            api, variant.repo_id, desired_digests(manifest, variant, selection)
        )
        rows.append(VariantPlan(variant, plan.action, plan.reason))
    return rows


def publish_release(
    manifest: Manifest,
    api: HfApi,
    *,
    variant_ids: Iterable[str] | None = None,
    dry_run: bool = False,
    workdir: Path | None = None,
    device: str | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    staging: Path | None = None,
) -> list[Outcome]:
    """Carry the plan out: build and commit what needs it; report each variant's outcome.

    A failing variant is reported and the others go on; nothing half-published stays
    behind, since each variant is one commit. Built folders are deleted once published,
    unless `staging` is given: then each stays in `staging/<variant id>` (the demo's, to
    look at; a real release is hundreds of GB).
    """
    outcomes = []
    base: Path | None = None
    with scratch_folder(workdir, "hubbot-build") as scratch:  # a killed run's is removed next time
        for row in plan_release(manifest, api, variant_ids):
            try:
                if dry_run:
                    outcome = Outcome(row.variant, row.action, None)
                elif row.action == Action.NO_OP:
                    if manifest.spec.hub.collections:  # a past run may have failed here
                        ensure_collections(
                            api,
                            row.variant.repo_id,
                            manifest.spec.hub.collections,
                            private=manifest.spec.hub.visibility == "private",
                        )
                    outcome = Outcome(row.variant, row.action, None)
                elif row.action == Action.CARD_ONLY:
                    result = refresh_card(manifest, api, row.variant)
                    outcome = Outcome(row.variant, row.action, result)
                else:
                    base = base or fetch_manifest_base(manifest)
                    out = (staging or Path(scratch)) / row.variant.id
                    # build replaces a previous build of this variant, and nothing else
                    built = build_variant(
                        manifest, row.variant, out, base_folder=base, device=device
                    )
                    try:
                        result = publish_folder(
                            api,
                            row.variant.repo_id,
                            built.folder,
                            private=manifest.spec.hub.visibility == "private",
                            collections=manifest.spec.hub.collections,
                            message=f"hubbot: {row.action} {row.variant.id}",
                        )
                    finally:
                        if staging is None:  # a release is hundreds of GB: one at a time
                            shutil.rmtree(built.folder)
                    outcome = Outcome(row.variant, row.action, result)
            except HubbotError as exc:
                outcome = Outcome(row.variant, row.action, None, error=str(exc))
            outcomes.append(outcome)
            if on_outcome:
                on_outcome(outcome)
    return outcomes


def card_files(manifest: Manifest, variant: Variant, record: Provenance) -> dict[str, bytes]:
    """README.md, the picture and `hubbot.json` for `record`, refreshed from the manifest."""
    from bot.card import write_card

    selection = record.selection
    digests = desired_digests(manifest, variant, selection)
    assert record.digests is not None
    refreshed = record.model_copy(
        update={
            "release": release_info(manifest, variant),
            "digests": digests.model_copy(update={"weights": record.digests.weights}),
        }
    )
    with tempfile.TemporaryDirectory(prefix="hubbot-card-") as tmp:
        folder = Path(tmp)
        written = write_card(folder, refreshed, template_path(manifest))
        files = {p.name: p.read_bytes() for p in written}
    if record.files.keys() & files.keys():  # a record that lists its card: list the new one
        card = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        refreshed = refreshed.model_copy(
            update={"files": dict(sorted({**record.files, **card}.items()))}
        )
    files["hubbot.json"] = refreshed.dumps().encode("utf-8")
    return files


def refresh_card(manifest: Manifest, api: HfApi, variant: Variant) -> PublishResult:
    """Re-render one published card from its `hubbot.json`; commit only what changed."""

    def render(record: Provenance) -> dict[str, bytes]:
        if record.digests is None:
            raise HubbotError(f"{variant.repo_id}: hubbot.json has no digests")
        return card_files(manifest, variant, record)

    return regenerate_card(
        api, variant.repo_id, render, message=f"hubbot: refresh card of {variant.id}"
    )


def regenerate_cards(
    manifest: Manifest,
    api: HfApi,
    *,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Nightly: re-render every published card; a broken repo is reported and skipped."""
    outcomes = []
    for variant in manifest.variants:
        try:
            result = refresh_card(manifest, api, variant)
            outcome = Outcome(variant, result.action, result)
        except HubbotError as exc:
            outcome = Outcome(variant, Action.CARD_ONLY, None, error=str(exc))
        outcomes.append(outcome)
        if on_outcome:
            on_outcome(outcome)
    return outcomes
