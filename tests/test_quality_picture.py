"""quality.png: one line per domain, this variant ringed, the same bytes for the same figures."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bot.errors import InputError
from bot.picture import QualityLine, _quality_frame, quality_png

LINES = [
    QualityLine("math", (2, 4, 6, 8), (0.9, 0.4, 0.1, 0.0), (0.5, 0.7, 0.9, 1.0)),
    QualityLine("prose", (2, 4, 6, 8), (1.0, 0.5, 0.2, 0.0), (0.4, 0.6, 0.85, 1.0)),
]


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def test_the_same_figures_give_the_same_bytes() -> None:
    one = quality_png(LINES, marked=("math", 4), experts_before=8, text="own text")
    _quality_frame.cache_clear()  # drawn afresh, not only taken from the cache
    two = quality_png(LINES, marked=("math", 4), experts_before=8, text="own text")
    assert one == two and one.startswith(b"\x89PNG")


def test_the_ring_marks_this_variant_in_both_panels() -> None:
    math4 = _pixels(quality_png(LINES, marked=("math", 4), experts_before=8, text="t"))
    prose6 = _pixels(quality_png(LINES, marked=("prose", 6), experts_before=8, text="t"))
    differ = np.abs(math4 - prose6).sum(axis=-1) > 60
    frame = _quality_frame(tuple(LINES), 8, "t")
    for marked in (("math", 4), ("prose", 6)):
        for row, col in frame.centres[marked]:  # one centre per panel
            near = differ[int(row) - 10 : int(row) + 11, int(col) - 10 : int(col) + 11]
            assert near.sum() > 20
    far = differ.copy()
    for marked in (("math", 4), ("prose", 6)):
        for row, col in frame.centres[marked]:
            far[int(row) - 10 : int(row) + 11, int(col) - 10 : int(col) + 11] = False
    assert not far.any()  # nothing else moves


def test_no_figures_is_an_error() -> None:
    with pytest.raises(InputError, match="no figures"):
        quality_png([], marked=("math", 4), experts_before=8, text="t")
