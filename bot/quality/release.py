"""A release's quality: every chosen variant measured in one load of the base model.

`evaluate_release` reads each domain's evaluation text and the general text, loads the
base checkpoint once (`bot.examples.load_model`: the device and dtype examples use), and
measures each variant on its domain's text and on the general text. `release_quality`
caches the result per manifest, base and device, so that building every variant of a
release in one process measures them once; `quality_record` is what one variant's
`hubbot.json` carries: the whole family's figures, for its card's table and picture.

Importing this module is cheap (no torch): plans and digests ask it what a manifest
measures; the model code loads only when something is measured.

Example:
    >>> quality = evaluate_release(manifest, device="cpu")                 # doctest: +SKIP
    >>> quality.figures["math-4"][domain_set("math")].kl                   # doctest: +SKIP
    0.21...
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.base import fetch_manifest_base
from bot.errors import InputError
from bot.manifest import Manifest, Variant
from bot.provenance import EvalTextRecord, Quality, QualityPoint, TextFigures
from bot.quality.spec import EvaluationSpec
from bot.quality.texts import GENERAL, EvalSet, describe, make_set, read_texts
from bot.selection.select import select_experts

if TYPE_CHECKING:
    from bot.quality.evaluate import Figures

_CACHE: dict[tuple[Any, ...], ReleaseQuality] = {}


def domain_set(domain_id: str) -> str:
    """Name of a domain's text set (`general` names the shared one)."""
    return f"domain:{domain_id}"


def evaluation_enabled(manifest: Manifest) -> bool:
    """Whether the manifest names any evaluation text."""
    spec = manifest.spec
    return bool(
        (spec.evaluation and spec.evaluation.general) or any(d.evaluation for d in spec.domains)
    )


def settings(manifest: Manifest) -> EvaluationSpec:
    return manifest.spec.evaluation or EvaluationSpec()


@dataclass(frozen=True)
class ReleaseQuality:
    """Figures of the chosen variants, with the run's settings and text sets."""

    device: str
    dtype: str
    attention: str
    versions: dict[str, str]
    settings: EvaluationSpec
    sets: dict[str, EvalSet]
    variants: tuple[Variant, ...]
    figures: dict[str, dict[str, Figures]]

    def points(self) -> dict[str, QualityPoint]:
        """Every measured variant's figures by id."""
        return {v.id: self.point(v) for v in self.variants}

    def point(self, variant: Variant) -> QualityPoint:
        per = self.figures[variant.id]
        own, general = per.get(domain_set(variant.domain)), per.get(GENERAL)
        return QualityPoint(
            variant=variant.id,
            domain=variant.domain,
            experts=variant.experts,
            domain_text=_record(own) if own else None,
            general_text=_record(general) if general else None,
        )


def chosen_variants(
    manifest: Manifest, variant_ids: Iterable[str] = (), domain_ids: Iterable[str] = ()
) -> list[Variant]:
    """The variants named (all when none are), restricted to the domains named."""
    domains = list(domain_ids)
    for domain in domains:
        try:
            manifest.domain(domain)
        except KeyError:
            raise InputError(f"{manifest.path}: no domain {domain!r}") from None
    chosen = [manifest.variant(v) for v in variant_ids] or list(manifest.variants)
    return [v for v in chosen if not domains or v.domain in domains]


def evaluate_release(
    manifest: Manifest,
    *,
    base_folder: Path | None = None,
    variant_ids: Iterable[str] = (),
    domain_ids: Iterable[str] = (),
    device: str | None = None,
    progress: bool = True,
) -> ReleaseQuality:
    """Measure the chosen variants (every one by default) against the base model."""
    from bot.examples import _versions, load_model
    from bot.quality.evaluate import evaluate_variants, evaluation_attention

    if not evaluation_enabled(manifest):
        raise InputError(
            f"{manifest.path}: no evaluation text (add 'evaluation' to the manifest or a domain)"
        )
    variants = chosen_variants(manifest, variant_ids, domain_ids)
    if not variants:
        raise InputError(f"{manifest.path}: no variant matches")
    config = settings(manifest)
    with _quiet_transformers():
        keeps = {v.id: select_experts(manifest, v).keep() for v in variants}
        loaded = load_model(base_folder or fetch_manifest_base(manifest), device=device)
    sets = _text_sets(manifest, loaded.tokenizer, {v.domain for v in variants}, config)
    runs = {
        v.id: (keeps[v.id], [n for n in (domain_set(v.domain), GENERAL) if n in sets])
        for v in variants
    }
    runs = {vid: run for vid, run in runs.items() if run[1]}
    with evaluation_attention(loaded.model, list(sets.values()), config.batch_size) as attention:
        figures = evaluate_variants(
            loaded.model,
            list(sets.values()),
            runs,
            batch_size=config.batch_size,
            progress=progress,
        )
    return ReleaseQuality(
        device=loaded.device,
        dtype=str(loaded.dtype).removeprefix("torch."),
        attention=attention,
        versions=_versions(),
        settings=config,
        sets=sets,
        variants=tuple(v for v in variants if v.id in figures),
        figures=figures,
    )


def release_quality(
    manifest: Manifest, base_folder: Path, *, device: str | None = None, progress: bool = True
) -> ReleaseQuality:
    """`evaluate_release` of every variant, measured once per manifest, base and device."""
    key = (manifest.path.resolve(), manifest.digest, Path(base_folder).resolve(), device)
    if key not in _CACHE:
        _CACHE.clear()  # one release at a time: a model run's figures are small, but a key
        _CACHE[key] = evaluate_release(  # left behind would outlive a changed manifest file
            manifest, base_folder=base_folder, device=device, progress=progress
        )
    return _CACHE[key]


def quality_record(manifest: Manifest, quality: ReleaseQuality, variant: Variant) -> Quality:
    """What `variant`'s `hubbot.json` records: the run, its texts and the family's figures."""
    if variant.id not in quality.figures:
        raise InputError(f"variant {variant.id!r} was not evaluated in this run")
    return release_record(manifest, quality)


def release_record(manifest: Manifest, quality: ReleaseQuality) -> Quality:
    """The run as a record: settings, texts and every measured variant's figures."""
    shown = f"{manifest.path.resolve().parent.name}/{manifest.path.name}"
    return Quality(
        device=quality.device,
        dtype=quality.dtype,
        attention=quality.attention,
        versions=quality.versions,
        tokens=quality.settings.tokens,
        sequence_length=quality.settings.sequence_length,
        batch_size=quality.settings.batch_size,
        texts={
            name: EvalTextRecord(
                source=s.source,
                texts=s.texts,
                tokens=s.tokens,
                text_digest=s.text_digest,
                tokens_digest=s.tokens_digest,
            )
            for name, s in quality.sets.items()
        },
        family=[quality.point(v) for v in quality.variants],
        command=f"hubbot eval {shlex.quote(shown)} --device {shlex.quote(quality.device)}",
    )


def _text_sets(
    manifest: Manifest, tokenizer: Any, domains: set[str], config: EvaluationSpec
) -> dict[str, EvalSet]:
    base_dir = manifest.path.parent
    sources = []
    if config.general is not None:
        sources.append((GENERAL, config.general))
    sources += [
        (domain_set(d.id), d.evaluation)
        for d in manifest.spec.domains
        if d.evaluation is not None and d.id in domains
    ]
    sets = {}
    for name, spec in sources:
        texts = read_texts(spec, base_dir)
        sets[name] = make_set(
            name,
            describe(spec),
            texts,
            tokenizer,
            tokens=config.tokens,
            sequence_length=config.sequence_length,
        )
    return sets


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No loading bars or notices from transformers: our own progress display is the one."""
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def _record(figures: Figures) -> TextFigures:
    return TextFigures(
        kl=figures.kl,
        top1=figures.top1,
        perplexity=figures.perplexity,
        base_perplexity=figures.base_perplexity,
        tokens=figures.tokens,
    )
