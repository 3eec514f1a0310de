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
from typing import TYPE_CHECKING

from huggingface_hub import HfApi

from bot.base import fetch_manifest_base
from bot.build import build_variant
from bot.card import write_card
from bot.desired import desired_digests, release_info, template_path
from bot.errors import HubbotError
from bot.folders import scratch_folder
from bot.hub.plan import Action, Plan, plan_variant
from bot.hub.publish import (
    MissingProvenanceError,
    PublishResult,
    ensure_collections,
    publish_folder,
    regenerate_card,
)
from bot.manifest import Manifest, Variant
from bot.provenance import Digests, Provenance
from bot.quality.gate import shortfall
from bot.quality.saved import current_points, current_record, family_change
from bot.selection.select import select_experts

if TYPE_CHECKING:
    from collections.abc import Mapping

    from bot.provenance import Quality, QualityPoint


@dataclass(frozen=True)
class VariantPlan:
    """A variant, what it needs, and why (for `held`: the figure and the floor)."""

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
    reason: str | None = None


def _chosen(manifest: Manifest, variant_ids: Iterable[str] | None) -> list[Variant]:
    if not variant_ids:
        return list(manifest.variants)
    return [manifest.variant(v) for v in variant_ids]


def plan_release(
    manifest: Manifest,
    api: HfApi,
    variant_ids: Iterable[str] | None = None,
    *,
    points: Mapping[str, QualityPoint] | None = None,
) -> list[VariantPlan]:
    """What every chosen variant needs, compared with what its repo holds.

    A variant below the manifest's quality floor is `held`: judged on the figures of its
    published `hubbot.json` while its weights are current, else on `points` (current
    figures by variant id, measured by `hubbot eval`) where given; a variant not measured
    yet is judged when it is built.

    A published card whose family table lacks a count of its domain (or lists one the
    manifest no longer has) needs a `card-only` update when `points` cover the domain;
    without them the row stays `no-op` and its reason says so (nothing is measured here).
    """
    rows = []
    for variant in _chosen(manifest, variant_ids):
        selection = select_experts(manifest, variant)
        desired = desired_digests(manifest, variant, selection)
        plan: Plan = plan_variant(api, variant.repo_id, desired)
        held = _held(manifest, variant, plan, desired, points or {})
        if held:
            rows.append(VariantPlan(variant, Action.HELD, held))
        else:
            rows.append(_with_family(manifest, variant, plan, points))
    return rows


def _with_family(
    manifest: Manifest, variant: Variant, plan: Plan, points: Mapping[str, QualityPoint] | None
) -> VariantPlan:
    """The plan's row, a card update added where the card's family table is behind."""
    change = None
    if plan.action in (Action.NO_OP, Action.CARD_ONLY) and plan.record is not None:
        change = family_change(plan.record.quality, manifest, variant, points)
    if change is None:
        return VariantPlan(variant, plan.action, plan.reason)
    if change.measured and plan.action == Action.NO_OP:
        return VariantPlan(variant, Action.CARD_ONLY, change.reason)
    return VariantPlan(variant, plan.action, f"{plan.reason}; {change.reason}")


def _held(
    manifest: Manifest,
    variant: Variant,
    plan: Plan,
    desired: Digests,
    points: Mapping[str, QualityPoint],
) -> str | None:
    """Why `variant` is held back by the quality floor, or None."""
    floor = manifest.spec.quality
    if floor is None:
        return None
    record = plan.record
    current = record is not None and record.digests is not None
    current = current and record.digests.weights == desired.weights  # type: ignore[union-attr]
    point = None
    if current and record is not None and record.quality is not None:
        point = record.quality.point(variant.id)
    else:
        point = points.get(variant.id)
    why = shortfall(point, floor)
    if why is None:
        return None
    if plan.action == Action.CREATE:
        return f"{why}: not published"
    at = f" at {plan.revision[:12]}" if plan.revision else ""
    return f"{why}: the published repo{at} is left as it is (not deleted); fix or unlist it"


def publish_release(
    manifest: Manifest,
    api: HfApi,
    *,
    variant_ids: Iterable[str] | None = None,
    dry_run: bool = False,
    workdir: Path | None = None,
    device: str | None = None,
    saved_quality: Path | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    staging: Path | None = None,
) -> list[Outcome]:
    """Carry the plan out: build and commit what needs it; report each variant's outcome.

    `saved_quality` (`hubbot eval --save`) gives current figures without a model run, for
    the plan's `held` and for the builds.

    A failing variant is reported and the others go on; nothing half-published stays
    behind, since each variant is one commit. Built folders are deleted once published,
    unless `staging` is given: then each stays in `staging/<variant id>` (the demo's, to
    look at; a real release is hundreds of GB).
    """
    outcomes = []
    base: Path | None = None
    with scratch_folder(workdir, "hubbot-build") as scratch:  # a killed run's is removed next time
        points = current_points(saved_quality, manifest) if saved_quality else None
        figures = current_record(saved_quality, manifest) if saved_quality else None
        for row in plan_release(manifest, api, variant_ids, points=points):
            try:
                if dry_run:
                    outcome = Outcome(row.variant, row.action, None)
                elif row.action == Action.HELD:
                    outcome = Outcome(row.variant, row.action, None, reason=row.reason)
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
                    result = refresh_card(manifest, api, row.variant, figures=figures)
                    outcome = Outcome(row.variant, row.action, result)
                else:
                    base = base or fetch_manifest_base(manifest)
                    out = (staging or Path(scratch)) / row.variant.id
                    # build replaces a previous build of this variant, and nothing else
                    built = build_variant(
                        manifest,
                        row.variant,
                        out,
                        base_folder=base,
                        device=device,
                        saved_quality=saved_quality,
                    )
                    try:
                        quality = built.provenance.quality
                        point = quality.point(row.variant.id) if quality else None
                        held = shortfall(point, manifest.spec.quality)
                        if held:  # measured only now: built, then held back
                            outcome = Outcome(row.variant, Action.HELD, None, reason=held)
                        else:
                            result = publish_folder(
                                api,
                                row.variant.repo_id,
                                built.folder,
                                private=manifest.spec.hub.visibility == "private",
                                collections=manifest.spec.hub.collections,
                                message=f"hubbot: {row.action} {row.variant.id}",
                            )
                            outcome = Outcome(row.variant, row.action, result)
                    finally:
                        if staging is None:  # a release is hundreds of GB: one at a time
                            shutil.rmtree(built.folder)
            except HubbotError as exc:
                outcome = Outcome(row.variant, row.action, None, error=str(exc))
            outcomes.append(outcome)
            if on_outcome:
                on_outcome(outcome)
    return outcomes


def card_files(manifest: Manifest, variant: Variant, record: Provenance) -> dict[str, bytes]:
    """README.md, the picture and `hubbot.json` for `record`, refreshed from the manifest."""

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


class HeldBackError(HubbotError):
    """A published repo whose own figures are below the quality floor: left as it is."""


def refresh_card(
    manifest: Manifest, api: HfApi, variant: Variant, *, figures: Quality | None = None
) -> PublishResult:
    """Re-render one published card from its `hubbot.json`; commit only what changed.

    `figures` (saved by `hubbot eval --save`, cut to current ones) replace the record's
    when its family table is behind them and they hold this variant's current figures:
    the card then shows the whole family of one run again. A repo whose recorded figures
    are below the manifest's floor is left as it is (`HeldBackError`), as `publish` does.
    """

    def render(record: Provenance) -> dict[str, bytes]:
        if record.digests is None:
            raise HubbotError(f"{variant.repo_id}: hubbot.json has no digests")
        own = record.quality.point(variant.id) if record.quality else None
        held = shortfall(own, manifest.spec.quality)
        if held:
            raise HeldBackError(
                f"{held}: the published repo is left as it is (not deleted); fix or unlist it"
            )
        if figures is not None and _takes_figures(manifest, variant, record, figures):
            record = record.model_copy(update={"quality": figures})
        return card_files(manifest, variant, record)

    return regenerate_card(
        api, variant.repo_id, render, message=f"hubbot: refresh card of {variant.id}"
    )


def _takes_figures(
    manifest: Manifest, variant: Variant, record: Provenance, figures: Quality
) -> bool:
    """Whether `record`'s card should show `figures` instead of its own: same weights, and
    a family table that `figures` bring up to date."""
    points = {p.variant: p for p in figures.family}
    change = family_change(record.quality, manifest, variant, points)
    if change is None or not change.measured or record.digests is None:
        return False
    selection = select_experts(manifest, variant)
    return record.digests.weights == desired_digests(manifest, variant, selection).weights


def regenerate_cards(
    manifest: Manifest,
    api: HfApi,
    *,
    saved_quality: Path | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Nightly: re-render every published card; a broken repo is reported and skipped.

    A published repo whose recorded figures are below the floor is left as it is and
    reported `held`. With `saved_quality` (`hubbot eval --save`), family tables behind the
    saved figures are brought up to date, and a variant the floor holds back that has no
    repo is reported `held` rather than failed; without it, each card is rendered from its
    `hubbot.json` alone. Nothing is measured either way.
    """
    figures = current_record(saved_quality, manifest) if saved_quality else None
    points = current_points(saved_quality, manifest) if saved_quality else {}
    outcomes = []
    for variant in manifest.variants:
        try:
            result = refresh_card(manifest, api, variant, figures=figures)
            outcome = Outcome(variant, result.action, result)
        except HeldBackError as exc:
            outcome = Outcome(variant, Action.HELD, None, reason=str(exc))
        except MissingProvenanceError as exc:
            held = shortfall(points.get(variant.id), manifest.spec.quality)
            if held:
                outcome = Outcome(variant, Action.HELD, None, reason=f"{held}: not published")
            else:
                outcome = Outcome(variant, Action.CARD_ONLY, None, error=str(exc))
        except HubbotError as exc:
            outcome = Outcome(variant, Action.CARD_ONLY, None, error=str(exc))
        outcomes.append(outcome)
        if on_outcome:
            on_outcome(outcome)
    return outcomes
