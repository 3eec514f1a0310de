"""The quality gate: whether a variant's figures meet the manifest's floor.

The floor (`quality: {max_kl, min_top1}`) is checked against the figures on the variant's
own domain text (the general text where a domain has none). A variant below it is held:
`plan` shows it as `held`, `publish` skips it, `matrix` leaves it out; a repo already on the
Hub stays as it is and is reported, never deleted.

Example:
    >>> from bot.provenance import TextFigures
    >>> floor = QualityFloor(max_kl=0.5)
    >>> shortfall(QualityPoint(variant="m-2", domain="m", experts=2,
    ...     domain_text=TextFigures(kl=0.7, top1=0.5, perplexity=9.0, base_perplexity=3.0,
    ...                             tokens=100)), floor)
    'KL 0.700 > max_kl 0.500'
"""

from __future__ import annotations

from bot.provenance import QualityPoint
from bot.quality.spec import QualityFloor


def shortfall(point: QualityPoint | None, floor: QualityFloor | None) -> str | None:
    """Why `point` is below `floor` (figure and floor, e.g. `KL 0.700 > max_kl 0.500`), or
    None when it meets the floor, there is no floor, or nothing was measured."""
    if floor is None or point is None:
        return None
    figures = point.domain_text or point.general_text
    if figures is None:
        return None
    reasons = []
    if floor.max_kl is not None and figures.kl > floor.max_kl:
        reasons.append(f"KL {figures.kl:.3f} > max_kl {floor.max_kl:.3f}")
    if floor.min_top1 is not None and figures.top1 < floor.min_top1:
        reasons.append(f"top-1 {figures.top1:.3f} < min_top1 {floor.min_top1:.3f}")
    return "; ".join(reasons) or None
