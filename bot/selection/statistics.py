"""Router statistics: how often, and how strongly, each expert of each layer was chosen.

One type, `ExpertStatistics`, whatever the source (the public fingerprint summaries, a
calibration run, a saved file). Per layer `l` and expert `e`:

- `selections[l, e]`: summed top-k selections (how many tokens had `e` among their top-k);
- `mass[l, e]`: summed router probability given to `e` (the softmax over the top-k logits);
- `weight[l]`: what both are divided by to give a score: tokens routed in the layer for a
  calibration, the sample weight of the published rule for the fingerprints;
- `tie_rank[l, e]`: order used to break exact score ties (lower first); `-1` marks an
  expert never met in the layer's data (a fingerprint summary does not list it, or a
  calibration never selected it).

The `digest` is the sha256 of a canonical form of the numbers (not of the source text), so
a renamed source selects the same experts under the same digest. Files are safetensors
(`save_statistics` / `read_statistics`), never pickle.

Example:
    >>> save_statistics(stats, Path("stats/law.safetensors"))   # doctest: +SKIP
    >>> read_statistics(Path("stats/law.safetensors")).digest == stats.digest  # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from bot.descriptors import descriptor_for
from bot.errors import HubbotError, InputError

FORMAT = "hubbot.expert-statistics"
VERSION = "1"
_FLOATS = ("selections", "mass", "weight")


@dataclass(frozen=True, eq=False)
class ExpertStatistics:
    """Per-layer, per-expert router statistics (see the module docstring)."""

    selections: np.ndarray
    mass: np.ndarray
    weight: np.ndarray
    tie_rank: np.ndarray
    tokens: int
    source: str

    @property
    def num_layers(self) -> int:
        return int(self.selections.shape[0])

    @property
    def num_experts(self) -> int:
        return int(self.selections.shape[1])

    @property
    def met(self) -> np.ndarray:
        """Boolean [layers, experts]: the expert appears in the layer's data."""
        return self.tie_rank >= 0

    def frequency(self) -> np.ndarray:
        """Selection score: selections divided by the layer weight (float64)."""
        return self.selections / self.weight[:, None]

    def router_mass(self) -> np.ndarray:
        """Router-mass score: summed probability divided by the layer weight (float64)."""
        return self.mass / self.weight[:, None]

    @cached_property
    def digest(self) -> str:
        """sha256 of the canonical form: a JSON header, then each array little-endian."""
        header = {
            "format": FORMAT,
            "version": VERSION,
            "shape": [self.num_layers, self.num_experts],
            "tokens": self.tokens,
        }
        h = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
        for name in _FLOATS:
            h.update(np.ascontiguousarray(getattr(self, name), dtype="<f8").tobytes())
        h.update(np.ascontiguousarray(self.tie_rank, dtype="<i8").tobytes())
        return h.hexdigest()


def make_statistics(
    selections: Any,
    mass: Any,
    weight: Any,
    *,
    tokens: int,
    source: str,
    tie_rank: Any = None,
    where: str = "statistics",
) -> ExpertStatistics:
    """Build checked statistics; `tie_rank` defaults to the expert index for met experts.

    An expert counts as met when `tie_rank` says so, or (without `tie_rank`) when it was
    selected at least once. Raises `InputError` naming `where`, the layer and the expert.
    """
    sel = np.array(selections, dtype=np.float64)
    if tie_rank is None:
        index = np.broadcast_to(np.arange(sel.shape[-1] if sel.ndim else 0), sel.shape)
        tie_rank = np.where(sel > 0, index, -1)
    stats = ExpertStatistics(
        selections=sel,
        mass=np.array(mass, dtype=np.float64),
        weight=np.array(weight, dtype=np.float64),
        tie_rank=np.array(tie_rank, dtype=np.int64),
        tokens=int(tokens),
        source=source,
    )
    _validate(stats, where)
    for name in (*_FLOATS, "tie_rank"):
        getattr(stats, name).setflags(write=False)
    return stats


def _validate(stats: ExpertStatistics, where: str) -> None:
    sel = stats.selections
    if sel.ndim != 2 or 0 in sel.shape:
        raise InputError(f"{where}: selections must be [layers, experts], got shape {sel.shape}")
    for name in ("mass", "tie_rank"):
        shape = getattr(stats, name).shape
        if shape != sel.shape:
            raise InputError(f"{where}: {name} has shape {shape}, selections {sel.shape}")
    if stats.weight.shape != sel.shape[:1]:
        raise InputError(f"{where}: weight has shape {stats.weight.shape}, expected [{len(sel)}]")
    for name in _FLOATS:
        bad = np.argwhere(~np.isfinite(getattr(stats, name)) | (getattr(stats, name) < 0))
        if len(bad):
            raise InputError(f"{where}: {name} {_at(bad[0])} is negative or not finite")
    empty = np.flatnonzero((stats.weight <= 0) | (sel.sum(axis=1) <= 0))
    if len(empty):
        raise InputError(f"{where}: layer {empty[0]} has no data (no weight or no selections)")
    unmet = np.argwhere((stats.tie_rank < 0) & ((sel > 0) | (stats.mass > 0)))
    if len(unmet) or (stats.tie_rank < -1).any():
        at = _at(unmet[0]) if len(unmet) else "somewhere"
        raise InputError(f"{where}: tie_rank {at} marks a selected expert as never met")
    if stats.tokens < 0:
        raise InputError(f"{where}: tokens must not be negative, got {stats.tokens}")


def _at(index: np.ndarray) -> str:
    return f"of layer {index[0]}, expert {index[1]}" if len(index) == 2 else f"[{index[0]}]"


def shape_problems(stats: ExpertStatistics, config: dict[str, Any]) -> list[str]:
    """Messages for each way `stats` does not fit the base model `config` (empty if none).

    Statistics have one row per MoE layer of the base model, in layer order.
    """

    problems = []
    descriptor = descriptor_for(config)
    layers = descriptor.num_layers(config)
    moe_layers = len(descriptor.moe_layer_indices(config))
    experts = descriptor.num_experts(config)
    if stats.num_layers != moe_layers:
        where = (
            f"{layers} ({descriptor.num_layers_key})"
            if moe_layers == layers
            else f"{moe_layers} MoE layers (of {layers})"
        )
        problems.append(f"the statistics have {stats.num_layers} layers, the base model {where}")
    if stats.num_experts != experts:
        problems.append(
            f"the statistics have {stats.num_experts} experts per layer, the base model "
            f"{experts} ({descriptor.num_experts_key})"
        )
    return problems


def save_statistics(stats: ExpertStatistics, path: Path) -> Path:
    """Write `stats` as safetensors (a `source: file` statistics source); return the path."""
    path = Path(path)
    tensors = {name: np.ascontiguousarray(getattr(stats, name)) for name in _FLOATS}
    tensors["tie_rank"] = np.ascontiguousarray(stats.tie_rank)
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "source": stats.source,
        "tokens": str(stats.tokens),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        tmp.replace(path)
    except OSError as exc:
        raise HubbotError(f"{path}: cannot write statistics: {exc.strerror}") from None
    return path


def read_statistics(path: Path) -> ExpertStatistics:
    """Read a file written by `save_statistics`; `InputError` naming the file if it is bad."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"statistics file {path} does not exist")
    try:
        with safe_open(str(path), framework="np") as fh:
            meta = fh.metadata() or {}
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118
    except (OSError, ValueError, SafetensorError) as exc:
        raise InputError(f"{path}: not a safetensors statistics file: {exc}") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise InputError(
            f"{path}: not a hubbot statistics file (format {meta.get('format')!r}, "
            f"version {meta.get('version')!r}; expected {FORMAT!r} version {VERSION})"
        )
    missing = [n for n in (*_FLOATS, "tie_rank") if n not in tensors]
    if missing:
        raise InputError(f"{path}: missing tensors {', '.join(missing)}")
    if tensors["tie_rank"].dtype.kind != "i":
        raise InputError(f"{path}: tie_rank must hold integers, not {tensors['tie_rank'].dtype}")
    try:
        tokens = int(meta.get("tokens", "0"))
    except ValueError:
        raise InputError(f"{path}: tokens {meta.get('tokens')!r} is not an integer") from None
    return make_statistics(
        tensors["selections"],
        tensors["mass"],
        tensors["weight"],
        tie_rank=tensors["tie_rank"],
        tokens=tokens,
        source=meta.get("source", str(path)),
        where=str(path),
    )
