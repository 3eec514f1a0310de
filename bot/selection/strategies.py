"""Selection strategies: pure functions from scores to one expert order per layer.

A domain's *final order* lists every expert of a layer once, best first; a variant with N
experts keeps the first N. The strategies (chosen per domain in the manifest):

- `frequency` / `router_mass`: the ranking by score, then the experts never met;
- `interleave`: the domain's ranking and the final order of domain `with`, alternated
  (the domain's i-th expert, then the other's i-th, each only if not taken yet); the
  other domain's full order fills whatever the domain's data never met;
- `inverse`: the final order of domain `of`, reversed.

Tie rule: experts with equal scores keep their `tie_rank` order (for the fingerprints the
order in which the data first listed them, which is the published rule's stable sort; for
a calibration, the lower expert index), then the lower index. Experts never met in a
layer's data are left out of its ranking; in a final order they come after the ranked
ones, lower index first, so N up to the number of experts is always defined.

Example:
    >>> ranking(np.array([[0.1, 0.5, 0.5]]), np.array([[0, 2, 1]]))
    [[2, 1, 0]]
    >>> interleave([2, 1], [0, 2, 1])
    [2, 0, 1]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def ranking(scores: np.ndarray, tie_rank: np.ndarray) -> list[list[int]]:
    """Per layer: the met experts (tie_rank >= 0), score descending, ties by tie_rank."""
    out = []
    for layer_scores, layer_ties in zip(scores, tie_rank, strict=True):
        met = np.flatnonzero(layer_ties >= 0)
        keys = (met, layer_ties[met], -layer_scores[met])
        out.append(met[np.lexsort(keys)].tolist())
    return out


def complete(order: Sequence[int], num_experts: int) -> list[int]:
    """`order` followed by every expert it lacks, lower index first."""
    taken = set(order)
    return [*order, *(e for e in range(num_experts) if e not in taken)]


def interleave(first: Sequence[int], second: Sequence[int]) -> list[int]:
    """`first[0], second[0], first[1], second[1], ...`, each expert only once."""
    out: list[int] = []
    taken: set[int] = set()
    for i in range(max(len(first), len(second))):
        for source in (first, second):
            if i < len(source) and source[i] not in taken:
                taken.add(source[i])
                out.append(source[i])
    return out


def final_orders(rankings: list[list[int]], num_experts: int) -> np.ndarray:
    """Stack per-layer orders, each completed to every expert, as int64 [layers, experts]."""
    return np.array([complete(order, num_experts) for order in rankings], dtype=np.int64)
