"""A loaded manifest and the variants it expands into.

Expansion is pure: the same manifest always gives the same variants, ids and repo names
(`naming` filled in with the base name, domain, expert count and parameters in billions).

Example:
    >>> [v.id for v in load_manifest("manifests/demo.yaml").variants][:2]  # doctest: +SKIP
    ['general-2', 'general-3']
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from bot.base import fetch_manifest_base
from bot.errors import InputError
from bot.manifest.schema import DomainSpec, ManifestSpec
from bot.model_stats import parameter_counts
from bot.selection.select import DomainSelection, Selector
from bot.yamlsrc import YamlDocument


@dataclass(frozen=True)
class Variant:
    """One repo of the release: a domain at an expert count."""

    id: str
    domain: str
    experts: int
    repo_name: str
    repo_id: str
    total_params: int


@dataclass(frozen=True)
class Manifest:
    """A loaded, validated manifest with its base config."""

    path: Path
    spec: ManifestSpec
    base_config: dict[str, Any]
    digest: str
    document: YamlDocument

    def resolve(self, relative: str) -> Path:
        """A path named in the manifest, taken relative to the manifest's folder."""
        return (self.path.parent / relative).resolve()

    def domain(self, domain_id: str) -> DomainSpec:
        for domain in self.spec.domains:
            if domain.id == domain_id:
                return domain
        raise KeyError(domain_id)

    @cached_property
    def variants(self) -> list[Variant]:
        """Every variant, domain by domain in manifest order, counts ascending."""
        return expand_variants(self.spec, self.base_config)

    @cached_property
    def selector(self) -> Selector:
        """The release's expert selections: each computed once for this loaded manifest."""
        return Selector(
            source=self.path,
            base_dir=self.path.parent,
            domains={d.id: DomainSelection(d.selection, d.statistics) for d in self.spec.domains},
            base_config=self.base_config,
            fetch_base=lambda: fetch_manifest_base(self),
        )

    def variant(self, variant_id: str) -> Variant:
        for variant in self.variants:
            if variant.id == variant_id:
                return variant
        choices = difflib.get_close_matches(variant_id, [v.id for v in self.variants], n=1)
        hint = f" (did you mean {choices[0]!r}?)" if choices else ""
        raise InputError(f"{self.path}: no variant {variant_id!r}{hint}")


def format_params_b(total_params: int) -> str:
    """Parameters in billions with one decimal, as in the published names (`11.4`)."""
    return f"{total_params / 1e9:.1f}"


def expand_variants(spec: ManifestSpec, base_config: dict[str, Any]) -> list[Variant]:
    counts = parameter_counts(base_config)
    variants = []
    for domain in spec.domains:
        for experts in (domain.experts or spec.experts).values():
            total = counts.total_for(experts)
            name = spec.naming.format(
                base_name=spec.base.name,
                domain=domain.id,
                experts=experts,
                params_b=format_params_b(total),
            )
            variants.append(
                Variant(
                    id=f"{domain.id}-{experts}",
                    domain=domain.id,
                    experts=experts,
                    repo_name=name,
                    repo_id=f"{spec.hub.namespace}/{name}",
                    total_params=total,
                )
            )
    return variants
