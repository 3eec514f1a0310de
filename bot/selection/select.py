"""Expert selection for a release: statistics per domain, final orders, kept experts.

A `Selector` holds what selection needs from a release (each domain's `selection` and
`statistics` blocks, the base config, the folder paths are relative to, and how to fetch
the base model when a domain calibrates) and caches what it computes, so after the first
statistics load a whole release selects in well under a second. A loaded manifest has one
(`Manifest.selector`); `select_experts`, `domain_ranking` and `domain_statistics` ask it.

`Selector.ranking` gives a domain's final order per layer (every expert once, best first,
see `bot.selection.strategies`) with each expert's score; `Selector.select` keeps the first
N of each layer for a variant and records why.

Scores are the domain's own metric (selection frequency, or router mass for
`router_mass`); an `inverse` domain shows the scores of the domain it reverses, and its
routing coverage is measured on that domain's data (it has none of its own). For the
fingerprints the frequency is the published rule's score (summed `count_frequency * w *
0.5` over the summed sample weight). An `interleave` domain ranks by frequency.

Example:
    >>> record = select_experts(manifest, manifest.variant("science-8"))   # doctest: +SKIP
    >>> record.kept_experts["0"], record.routing_coverage.mean             # doctest: +SKIP
    ([3, 9, 11, 16, 17, 19, 22, 31], 0.488...)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bot.descriptors import descriptor_for
from bot.errors import InputError
from bot.provenance import SelectionRecord
from bot.selection import strategies
from bot.selection.coverage import routing_coverage
from bot.selection.fingerprints import packed_table, raw_table
from bot.selection.spec import (
    CalibrationStatistics,
    FileStatistics,
    FingerprintStatistics,
    SelectionSpec,
    StatisticsSpec,
)
from bot.selection.statistics import ExpertStatistics, read_statistics, shape_problems

if TYPE_CHECKING:
    from bot.manifest import Manifest, Variant


@dataclass(frozen=True, eq=False)
class DomainRanking:
    """A domain's final expert order per layer, with scores and the statistics read.

    `order[l]` lists every expert of layer `l`, the ones to keep first; `scores[l, e]` is
    expert `e`'s score (0.0 where the data never met it); `statistics[0]` is the domain's
    own statistics (for `inverse`, those of the domain it reverses), then any others read.
    """

    domain: str
    strategy: str
    metric: str
    order: np.ndarray
    scores: np.ndarray
    statistics: tuple[ExpertStatistics, ...]
    layers: tuple[int, ...] = ()
    """The model layer of each row (the MoE layers; empty: rows are layers 0..N-1)."""

    @property
    def statistics_source(self) -> str:
        return " + ".join(dict.fromkeys(s.source for s in self.statistics))

    @property
    def statistics_digest(self) -> str:
        """The digest of the statistics read (of their digests, when there are several)."""
        digests = list(dict.fromkeys(s.digest for s in self.statistics))
        if len(digests) == 1:
            return digests[0]
        return hashlib.sha256("\n".join(digests).encode()).hexdigest()

    def kept(self, experts: int, *, groups: int = 1) -> np.ndarray:
        """The first `experts` of each layer's order, sorted: int [layers, experts].

        With group-limited routing (`groups` > 1, experts numbered group by group), each
        group keeps its first `experts / groups` in the order, so every group keeps as many.
        """
        total = self.order.shape[1]
        if not 1 <= experts <= total or experts % groups:
            raise InputError(f"domain {self.domain!r}: cannot keep {experts} of {total} experts")
        if groups == 1:
            return np.sort(self.order[:, :experts], axis=1)
        size, share = total // groups, experts // groups
        rows = []
        for order in self.order:
            in_group = order // size
            rows.append(
                np.sort(np.concatenate([order[in_group == g][:share] for g in range(groups)]))
            )
        return np.stack(rows)

    def to_json(self, layer: int | None = None) -> dict[str, Any]:
        """Plain data for `hubbot scores --json`: every layer, or only `layer`."""
        ids = list(self.layers or range(len(self.order)))
        if layer is not None and layer not in ids:
            raise InputError(f"no layer {layer}: the model has MoE layers {_spans(ids)}")
        rows = range(len(ids)) if layer is None else [ids.index(layer)]
        met = self.statistics[0].met
        return {
            "domain": self.domain,
            "strategy": self.strategy,
            "metric": self.metric,
            "statistics_source": self.statistics_source,
            "statistics_digest": self.statistics_digest,
            "layers": [
                {
                    "layer": ids[i],
                    "ranking": [
                        {
                            "rank": rank,
                            "expert": int(e),
                            "score": float(self.scores[i, e]),
                            "measured": bool(met[i, e]),
                        }
                        for rank, e in enumerate(self.order[i], start=1)
                    ],
                }
                for i in rows
            ],
        }


@dataclass(frozen=True)
class DomainSelection:
    """A domain's `selection` block and its own `statistics` source (None: it has none)."""

    selection: SelectionSpec
    statistics: StatisticsSpec | None


class Selector:
    """One release's expert selections, computed once each and then reused.

    `source` names the release in messages (the manifest file); `base_dir` is the folder
    statistics paths are relative to; `fetch_base` gives the base checkpoint's folder, and
    runs only when a domain calibrates on the model.
    """

    def __init__(
        self,
        *,
        source: Path,
        base_dir: Path,
        domains: Mapping[str, DomainSelection],
        base_config: dict[str, Any],
        fetch_base: Callable[[], Path],
    ) -> None:
        self.source = source
        self.base_dir = base_dir
        self.domains = dict(domains)
        self.base_config = base_config
        self.fetch_base = fetch_base
        self._rankings: dict[str, DomainRanking] = {}
        self._statistics: dict[str, ExpertStatistics] = {}

    def select(self, domain_id: str, experts: int) -> SelectionRecord:
        """Which `experts` of each layer a variant of `domain_id` keeps, their scores and
        routing coverage."""
        ranking = self.ranking(domain_id)
        config = self.base_config
        kept = ranking.kept(experts, groups=descriptor_for(config).num_groups(config))
        scores = np.take_along_axis(ranking.scores, kept, axis=1)
        layers = descriptor_for(config).moe_layer_indices(config)  # statistics rows -> layers
        return SelectionRecord(
            strategy=ranking.strategy,
            statistics_source=ranking.statistics_source,
            statistics_digest=ranking.statistics_digest,
            kept_experts={
                str(layer): row.tolist() for layer, row in zip(layers, kept, strict=True)
            },
            scores={str(layer): row.tolist() for layer, row in zip(layers, scores, strict=True)},
            routing_coverage=routing_coverage(ranking.statistics[0], kept),
        )

    def ranking(self, domain_id: str) -> DomainRanking:
        """The final order of `domain_id` per layer."""
        if domain_id not in self._rankings:
            self._rankings[domain_id] = self._rank(domain_id)
        return self._rankings[domain_id]

    def statistics(self, domain_id: str, *, device: str | None = None) -> ExpertStatistics:
        """The statistics of the domain's own `statistics` source.

        A calibration source fetches and loads the base model on `device` (default: the best
        one, see `bot.examples.load_model`) and runs it; to measure once and reuse, save the
        result with `save_statistics` and point the domain at it with a `file` source.
        """
        domain = self._domain(domain_id)
        if domain.statistics is None:
            raise InputError(f"domain {domain_id!r} has no statistics of its own")
        if domain_id not in self._statistics:
            stats = self.load_statistics(domain.statistics, device=device)
            problems = shape_problems(stats, self.base_config)
            if problems:
                raise InputError(f"domain {domain_id!r}: {'; '.join(problems)}")
            self._statistics[domain_id] = stats
        return self._statistics[domain_id]

    def load_statistics(
        self, spec: StatisticsSpec, *, device: str | None = None
    ) -> ExpertStatistics:
        """Read or measure (on `device`) the statistics a `statistics` block describes."""
        config = self.base_config
        if isinstance(spec, FingerprintStatistics):
            if spec.path is None:
                table = packed_table()
            else:
                experts = descriptor_for(config).num_experts(config)
                table = raw_table((self.base_dir / spec.path).resolve(), experts)
            return table.statistics(spec.subsets)
        if isinstance(spec, FileStatistics):
            return read_statistics(self.base_dir / spec.path)
        assert isinstance(spec, CalibrationStatistics)
        # torch and transformers load only when a domain calibrates on the model
        from bot.examples import load_model
        from bot.selection.calibrate import calibrate, calibration_texts

        texts = calibration_texts(spec, self.base_dir)
        loaded = load_model(self.fetch_base(), device=device)
        return calibrate(loaded.model, loaded.tokenizer, texts, max_tokens=spec.max_tokens)

    def _rank(self, domain_id: str) -> DomainRanking:
        sel = self._domain(domain_id).selection
        config = self.base_config
        experts = descriptor_for(config).num_experts(config)
        if sel.strategy == "inverse":
            assert sel.of is not None
            other = self.ranking(sel.of)
            return DomainRanking(
                domain=domain_id,
                strategy=f"inverse(of={sel.of})",
                metric=other.metric,
                order=other.order[:, ::-1].copy(),
                scores=other.scores,
                statistics=other.statistics,
                layers=other.layers,
            )
        stats = self.statistics(domain_id)
        metric = "router_mass" if sel.strategy == "router_mass" else "frequency"
        scores = stats.router_mass() if metric == "router_mass" else stats.frequency()
        own = strategies.ranking(scores, stats.tie_rank)
        if sel.strategy == "interleave":
            assert sel.with_ is not None
            other = self.ranking(sel.with_)
            own = [
                strategies.interleave(a, b) for a, b in zip(own, other.order.tolist(), strict=True)
            ]
            read = (stats, *other.statistics)
            strategy = f"interleave(with={sel.with_})"
        else:
            read, strategy = (stats,), sel.strategy
        order = strategies.final_orders(own, experts)
        order.setflags(write=False)
        layers = tuple(descriptor_for(config).moe_layer_indices(config))
        return DomainRanking(domain_id, strategy, metric, order, scores, read, layers)

    def _domain(self, domain_id: str) -> DomainSelection:
        try:
            return self.domains[domain_id]
        except KeyError:
            raise InputError(f"{self.source}: no domain {domain_id!r}") from None


def select_experts(manifest: Manifest, variant: Variant) -> SelectionRecord:
    """Which experts `variant` keeps in each layer (the manifest's `selector`)."""
    return manifest.selector.select(variant.domain, variant.experts)


def domain_ranking(manifest: Manifest, domain_id: str) -> DomainRanking:
    """The final order of `domain_id` per layer (the manifest's `selector`)."""
    return manifest.selector.ranking(domain_id)


def domain_statistics(
    manifest: Manifest, domain_id: str, *, device: str | None = None
) -> ExpertStatistics:
    """The statistics of the domain's own source (the manifest's `selector`)."""
    return manifest.selector.statistics(domain_id, device=device)


def _spans(layers: list[int]) -> str:
    """`0..23` for consecutive layers, else the list."""
    if layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}..{layers[-1]}"
    return ", ".join(map(str, layers))
