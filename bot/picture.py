"""The picture of kept experts on a card: a layer x expert grid, as PNG bytes.

matplotlib (Agg canvas, a private `Figure`, the DejaVu font it ships) draws each grid
shape once: axes, ticks, labels and every cell in the "dropped" colour; recolouring the
cells gives the same drawing with every cell kept. A picture takes each cell's pixels
from one or the other and is
saved as a palette PNG with no time or software chunk: the same selection always gives
the same bytes, and a release of hundreds of cards costs one matplotlib drawing per
grid shape rather than one per card (5 ms a picture instead of 80).

Example:
    >>> png = kept_experts_png({"0": [1, 3], "1": [0, 2]}, experts_before=4)
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from bot.errors import HubbotError, InputError

FILENAME = "experts.png"
KEPT_COLOUR = "#2b6cb0"
DROPPED_COLOUR = "#e2e8f0"
_CELL_INCHES = 0.19
_DPI = 100
_STYLE = {"font.family": "DejaVu Sans", "font.size": 9}


def kept_grid(kept_experts: dict[str, list[int]], experts_before: int) -> np.ndarray:
    """Boolean array [layer, expert]: True where the layer keeps that original expert.

    Layers are the MoE layers kept lists name; a dense layer below the last (DeepSeek's
    first layers) is a row with nothing kept.
    """
    if not all(str(layer).isdigit() for layer in kept_experts):
        raise InputError(f"kept_experts: layers must be numbers, got {sorted(kept_experts)}")
    layers = sorted(int(layer) for layer in kept_experts)
    if not layers:
        raise InputError("kept_experts: no layers")
    grid = np.zeros((layers[-1] + 1, experts_before), dtype=bool)
    for layer, experts in kept_experts.items():
        if any(not 0 <= e < experts_before for e in experts):
            raise InputError(
                f"kept_experts: layer {layer} names an expert outside 0..{experts_before - 1}"
            )
        grid[int(layer), experts] = True
    return grid


def kept_experts_png(kept_experts: dict[str, list[int]], experts_before: int) -> bytes:
    """PNG of which original experts each layer keeps (rows: layers, columns: experts)."""
    grid = kept_grid(kept_experts, experts_before)
    frame = _frame(*grid.shape)
    kept = grid[np.ix_(frame.row_layer, frame.col_expert)] & frame.cell
    image = Image.fromarray(np.where(kept, frame.kept, frame.dropped))
    image.putpalette(frame.palette)  # "L" indices become a "P" image
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")  # PIL writes no time or software chunk
    return buffer.getvalue()


@dataclass(frozen=True)
class _Frame:
    """A grid drawn with every cell dropped and with every cell kept (palette indices), and
    for each pixel the cell it belongs to."""

    palette: bytes  # RGB triples
    dropped: np.ndarray  # [height, width] uint8 palette index
    kept: np.ndarray  # [height, width] uint8 palette index
    row_layer: np.ndarray  # [height] layer of each pixel row (clipped into range)
    col_expert: np.ndarray  # [width] expert of each pixel column (clipped into range)
    cell: np.ndarray  # [height, width] True where a cell covers the pixel, even partly


@dataclass(frozen=True)
class _Matplotlib:
    """The parts of matplotlib we draw with."""

    rc_context: Any
    Figure: Any
    Canvas: Any
    ListedColormap: Any
    to_rgba_array: Any


@lru_cache(maxsize=1)
def _matplotlib() -> _Matplotlib:
    """matplotlib, imported when the first picture is drawn: commands that only check a
    manifest (which reach this module through the card's template check) never load it."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap, to_rgba_array
    from matplotlib.figure import Figure

    return _Matplotlib(
        matplotlib.rc_context, Figure, FigureCanvasAgg, ListedColormap, to_rgba_array
    )


@lru_cache(maxsize=8)
def _frame(layers: int, experts: int) -> _Frame:
    mpl = _matplotlib()
    with mpl.rc_context(_STYLE):
        width = max(3.2, 0.6 + _CELL_INCHES * experts)
        height = 0.8 + _CELL_INCHES * layers
        figure = mpl.Figure(figsize=(width, height), dpi=_DPI)
        canvas = mpl.Canvas(figure)
        # Margins in inches: 0.5 left, 0.1 right, 0.45 below (labels), 0.35 above (title).
        axes = figure.add_axes(
            (0.5 / width, 0.45 / height, (width - 0.6) / width, (height - 0.8) / height)
        )
        axes.imshow(
            np.zeros((layers, experts)),
            cmap=mpl.ListedColormap([DROPPED_COLOUR]),
            aspect="equal",
            interpolation="nearest",
        )
        axes.vlines(np.arange(0.5, experts - 1), -0.5, layers - 0.5, colors="white", lw=0.8)
        axes.hlines(np.arange(0.5, layers - 1), -0.5, experts - 0.5, colors="white", lw=0.8)
        axes.set_xticks(range(0, experts, 4 if experts > 16 else 1))
        axes.set_yticks(range(0, layers, 2 if layers > 12 else 1))
        axes.set_xlabel("original expert index")
        axes.set_ylabel("layer")
        axes.set_anchor("SW")
        axes.set_title("Kept experts (blue)", loc="left")
        canvas.draw()
        pixels = np.array(canvas.buffer_rgba(), dtype=np.uint8)
        to_data = axes.transData.inverted()
    rows, cols = pixels.shape[:2]
    # Pixel centres in display space (origin bottom left) -> data space (cell centres at ints).
    xs = to_data.transform(np.column_stack([np.arange(cols) + 0.5, np.zeros(cols)]))[:, 0]
    ys = to_data.transform(np.column_stack([np.zeros(rows), rows - np.arange(rows) - 0.5]))[:, 1]
    col_expert, row_layer = np.rint(xs).astype(int), np.rint(ys).astype(int)
    inside = ((row_layer >= 0) & (row_layer < layers))[:, None] & (
        (col_expert >= 0) & (col_expert < experts)
    )[None, :]
    # Cell pixels are the dropped colour blended with white grid lines by anti-aliasing;
    # recover each one's share of cell so that kept cells are blended the same way.
    dropped = _rgba(DROPPED_COLOUR)
    share = (255.0 - pixels[..., :3]) / (255.0 - dropped[:3])
    blend = np.all(np.abs(share - share[..., :1]) * (255.0 - dropped[:3]) <= 2, axis=-1)
    coverage = np.where((inside & blend)[..., None], np.clip(share[..., :1], 0, 1), 0.0)
    cell = coverage[..., 0] > 0
    dropped = pixels[..., :3]
    kept = np.rint(coverage * _rgba(KEPT_COLOUR)[:3] + (1 - coverage) * 255).astype(np.uint8)
    kept = np.where(cell[..., None], kept, dropped)
    # Both images as indices into one palette: PNG "P" images encode several times faster.
    # Anti-aliased text brings ~256 greys; even greys only (255 stays) leave room for the
    # cell colours, a change of one level no eye can see.
    grey = (dropped == dropped[..., :1]).all(axis=-1, keepdims=True) & (dropped < 255)
    dropped = np.where(grey, dropped & 0xFE, dropped)
    kept = np.where(grey & ~cell[..., None], kept & 0xFE, kept)
    colours, index = np.unique(
        np.concatenate([dropped.reshape(-1, 3), kept.reshape(-1, 3)]), axis=0, return_inverse=True
    )
    if len(colours) > 256:
        raise HubbotError(f"expert grid picture has {len(colours)} colours, more than a palette")
    index = index.astype(np.uint8).reshape(2, rows, cols)
    frame = _Frame(
        palette=colours.astype(np.uint8).tobytes(),
        dropped=index[0],
        kept=index[1],
        row_layer=np.clip(row_layer, 0, layers - 1),
        col_expert=np.clip(col_expert, 0, experts - 1),
        cell=cell,
    )
    for array in (frame.dropped, frame.kept, frame.cell):
        array.setflags(write=False)
    return frame


def _rgba(colour: str) -> np.ndarray:
    return np.rint(_matplotlib().to_rgba_array(colour)[0] * 255)


# ---------------------------------------------------------------- quality against expert count

QUALITY_FILENAME = "quality.png"
_LINE_COLOURS = (
    "#2b6cb0", "#c05621", "#2f855a", "#9b2c2c", "#6b46c1", "#b7791f", "#2c7a7b", "#97266d",
    "#4a5568", "#276749",
)  # fmt: skip


@dataclass(frozen=True)
class QualityLine:
    """One domain's figures by expert count (ascending), on its own evaluation text."""

    domain: str
    experts: tuple[int, ...]
    kl: tuple[float, ...]
    top1: tuple[float, ...]


def quality_png(
    lines: list[QualityLine], *, marked: tuple[str, int], experts_before: int, text: str
) -> bytes:
    """PNG of KL and top-1 agreement against experts per layer: one line per domain, the
    variant `marked` (domain, experts) ringed. The same figures always give the same bytes.

    `text` names what the figures were measured on (shown in the title). The lines are
    drawn once per release (cached); each card's ring is then stamped on with numpy.
    """
    if not lines or any(not line.experts for line in lines):
        raise InputError("quality picture: no figures to draw")
    frame = _quality_frame(tuple(lines), experts_before, text)
    pixels = frame.pixels.astype(np.float64)
    for centre in frame.centres.get(marked, ()):
        _stamp_ring(pixels, centre)
    image = Image.fromarray(np.rint(pixels).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")  # PIL writes no time or software chunk
    return buffer.getvalue()


_RING_RADIUS = 7.0  # pixels: a ring around the point, as an 11 pt marker at 100 dpi
_RING_WIDTH = 2.2


@dataclass(frozen=True)
class _QualityFrame:
    pixels: np.ndarray  # [height, width, 3] uint8, every line drawn, no ring
    centres: dict[tuple[str, int], tuple[tuple[float, float], ...]]  # (row, col) per axes


@lru_cache(maxsize=4)
def _quality_frame(lines: tuple[QualityLine, ...], experts_before: int, text: str) -> _QualityFrame:
    mpl = _matplotlib()
    with mpl.rc_context(_STYLE):
        figure = mpl.Figure(figsize=(8.0, 3.4), dpi=_DPI)
        canvas = mpl.Canvas(figure)
        left, right = figure.subplots(1, 2)
        for index, line in enumerate(lines):
            colour = _LINE_COLOURS[index % len(_LINE_COLOURS)]
            for axes, values in ((left, line.kl), (right, line.top1)):
                axes.plot(line.experts, values, color=colour, lw=1.4, marker="o", ms=3,
                          label=line.domain)  # fmt: skip
        left.set_ylabel("KL(base ‖ variant), nats/token")
        right.set_ylabel("top-1 agreement with base")
        right.set_ylim(0, 1.02)
        left.set_ylim(bottom=0)
        for axes in (left, right):
            axes.set_xlabel("experts per layer")
            axes.set_xlim(0, experts_before + 1)
            axes.grid(True, color="#e2e8f0", lw=0.6)
        right.legend(loc="lower right", fontsize=8, frameon=False)
        figure.suptitle(
            f"Closeness to the base model ({text}); ringed: this model", x=0.01, ha="left"
        )
        figure.tight_layout()
        canvas.draw()
        pixels = np.array(canvas.buffer_rgba(), dtype=np.uint8)[..., :3]
        height = pixels.shape[0]
        centres = {}
        for line in lines:
            for at, experts in enumerate(line.experts):
                points = []
                for axes, values in ((left, line.kl), (right, line.top1)):
                    x, y = axes.transData.transform((experts, values[at]))
                    points.append((height - float(y), float(x)))
                centres[(line.domain, experts)] = tuple(points)
    pixels.setflags(write=False)
    return _QualityFrame(pixels=pixels, centres=centres)


def _stamp_ring(pixels: np.ndarray, centre: tuple[float, float]) -> None:
    """Darken an anti-aliased black ring into `pixels` (float RGB) around (row, col)."""
    row, col = centre
    reach = int(_RING_RADIUS + _RING_WIDTH) + 2
    top, left = max(0, int(row) - reach), max(0, int(col) - reach)
    bottom = min(pixels.shape[0], int(row) + reach + 1)
    right = min(pixels.shape[1], int(col) + reach + 1)
    rows = np.arange(top, bottom)[:, None] + 0.5
    cols = np.arange(left, right)[None, :] + 0.5
    distance = np.hypot(rows - row, cols - col)
    alpha = np.clip(_RING_WIDTH / 2 + 0.5 - np.abs(distance - _RING_RADIUS), 0.0, 1.0)
    pixels[top:bottom, left:right] *= (1.0 - alpha)[..., None]
