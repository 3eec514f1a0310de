"""Numbers for people: counts and byte sizes in the unit that fits them.

Example:
    >>> count(166_432), count(4_185_504_672), size(213_000), size(13_761_300_000)
    ('166K', '4.2B', '0.2 MB', '13.8 GB')
"""

from __future__ import annotations

_COUNT_UNITS = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"))
_SIZE_UNITS = ((1e9, "GB"), (1e6, "MB"), (1e3, "KB"))  # model sizes: GB at most, as on the Hub


def _digits(value: float) -> str:
    """Three significant figures at most: 166, 20.9, 4.2, 6.0."""
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def count(value: int | float) -> str:
    """A count in the largest unit it reaches: 950, 1.2K, 166K, 4.2M, 20.9B."""
    for scale, unit in _COUNT_UNITS:
        if abs(value) >= scale:
            return f"{_digits(value / scale)}{unit}"
    return f"{value:,.0f}"


def size(value: int | float) -> str:
    """Bytes in decimal units, each from a tenth of it up: 50 B, 0.5 KB, 0.2 MB, 13.8 GB."""
    for scale, unit in _SIZE_UNITS:
        if abs(value) >= scale / 10:
            return f"{_digits(value / scale)} {unit}"
    return f"{value:,.0f} B"
