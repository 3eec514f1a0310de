"""Routing coverage: how much of the base model's routing a set of kept experts still serves.

For each layer, the share of the top-k routing decisions recorded in the statistics (on
the domain's own data) that chose a kept expert; the mean is over layers. It is computed
from the statistics alone, without the model.

Example:
    >>> routing_coverage(stats, kept).mean                      # doctest: +SKIP
    0.83
"""

from __future__ import annotations

import numpy as np

from bot.provenance import RoutingCoverage
from bot.selection.statistics import ExpertStatistics


def routing_coverage(stats: ExpertStatistics, kept: np.ndarray) -> RoutingCoverage:
    """Coverage of `kept` (int [layers, n], original expert indices) under `stats`."""
    total = stats.selections.sum(axis=1)
    served = np.take_along_axis(stats.selections, kept, axis=1).sum(axis=1)
    per_layer = [float(x) for x in served / total]
    return RoutingCoverage(per_layer=per_layer, mean=float(np.mean(per_layer)))
