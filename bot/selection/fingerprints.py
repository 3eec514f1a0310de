"""The public GPT-OSS expert fingerprint summaries: reading, packing and the published rule.

The study's raw layout (`summaries/map.json` plus one JSON summary per benchmark, category
and bucket; see `bot/data/fingerprints/NOTICE`) is 83 MB. hubbot ships the same numbers
packed: `index.json` (files in map.json order, with sample and token counts) and
`entries.safetensors.xz` (for every file, think then answer, layer by layer: the listed
experts in their JSON order with `count_frequency` and `prob_density` as float64).
`FingerprintTable` holds either form; `statistics` applies the published rule:

1. visit the files in order (`"*"`: map.json order; else the subsets as listed, buckets
   in map.json order); with `w = sample_count`, for the think then the answer analytics
   (skipping a missing or empty one) add `w` to each listed layer's weight and
   `count_frequency * w * 0.5` to each listed expert's selections (float64, in order);
2. the score is selections / weight; experts tie by the order they were first met.

`prob_density` is summed the same way into `mass`.

Example:
    >>> table = packed_table()
    >>> stats = table.statistics(["mmlu_test/virology", "mmlu_dev/virology"])
    >>> stats.num_layers, stats.num_experts
    (24, 32)
"""

from __future__ import annotations

import difflib
import hashlib
import json
import lzma
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, save

from bot.errors import HubbotError, InputError
from bot.selection.statistics import ExpertStatistics, make_statistics

PACKED_DIR = Path(__file__).resolve().parent.parent / "data" / "fingerprints"
INDEX = "index.json"
PAYLOAD = "entries.safetensors.xz"
FORMAT = "hubbot.fingerprints"
PHASES = ("think", "answer")
_LAYER = re.compile(r"layer_(\d+)")


@dataclass(frozen=True)
class SummaryFile:
    """One summary file: its subset (`<benchmark>/<category>`), bucket and counts."""

    subset: str
    bucket: str
    sample_count: int
    think_tokens: float | None
    answer_tokens: float | None


@dataclass(frozen=True, eq=False)
class FingerprintTable:
    """Every summary file's entries, in file, phase, layer and JSON order.

    `lengths[f, p, l]` is how many experts file `f` lists for phase `p` (think, answer) in
    layer `l`, or -1 where the file has no such layer; `expert`, `count_frequency` and
    `prob_density` hold the entries one after another.
    """

    files: tuple[SummaryFile, ...]
    lengths: np.ndarray
    expert: np.ndarray
    count_frequency: np.ndarray
    prob_density: np.ndarray
    num_experts: int
    origin: str

    @property
    def num_layers(self) -> int:
        return int(self.lengths.shape[2])

    @property
    def subsets(self) -> list[str]:
        """Subset names in map.json order."""
        return list(dict.fromkeys(f.subset for f in self.files))

    def statistics(self, subsets: Sequence[str] | Literal["*"]) -> ExpertStatistics:
        """Apply the published rule to `subsets` (see the module docstring)."""
        return _aggregate(self, "*" if subsets == "*" else tuple(subsets))


def unknown_subsets(names: Sequence[str], known: Sequence[str]) -> list[tuple[int, str]]:
    """(position, message with a did-you-mean) for each of `names` not in `known`."""
    known_set = set(known)
    out = []
    for i, name in enumerate(names):
        if name not in known_set:
            hint = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
            out.append((i, f"unknown fingerprint subset {name!r}{suffix}"))
    return out


@lru_cache(maxsize=64)
def _aggregate(table: FingerprintTable, subsets: tuple[str, ...] | str) -> ExpertStatistics:
    if subsets == "*":
        chosen = list(range(len(table.files)))
    else:
        problems = unknown_subsets(subsets, table.subsets)
        if problems:
            raise InputError(f"{table.origin}: {problems[0][1]}")
        by_subset: dict[str, list[int]] = {}
        for i, f in enumerate(table.files):
            by_subset.setdefault(f.subset, []).append(i)
        chosen = [i for name in dict.fromkeys(subsets) for i in by_subset[name]]
    if not chosen:
        raise InputError(f"{table.origin}: no subsets chosen")
    layers, experts = table.num_layers, table.num_experts
    sizes = np.maximum(table.lengths, 0).sum(axis=(1, 2))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    entry_layer = np.repeat(
        np.tile(np.arange(layers), len(table.files) * 2), np.maximum(table.lengths, 0).ravel()
    )
    entries = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in chosen])
    samples = np.array([table.files[i].sample_count for i in chosen], dtype=np.float64)
    w = np.repeat(samples, sizes[chosen])
    key = entry_layer[entries] * experts + table.expert[entries]
    bins = layers * experts
    selections = np.bincount(key, table.count_frequency[entries] * w * 0.5, bins)
    mass = np.bincount(key, table.prob_density[entries] * w * 0.5, bins)
    present = table.lengths[chosen] >= 0
    weight = (present * samples[:, None, None]).sum(axis=(0, 1))
    met, first = np.unique(key, return_index=True)
    tie_rank = np.full(bins, -1, dtype=np.int64)
    by_layer = met[np.lexsort((first, met // experts))]
    layer_start = np.searchsorted(by_layer // experts, by_layer // experts)
    tie_rank[by_layer] = np.arange(len(by_layer)) - layer_start
    tokens = sum(
        table.files[i].sample_count
        * ((table.files[i].think_tokens or 0.0) + (table.files[i].answer_tokens or 0.0))
        for i in chosen
    )
    n_samples = int(samples.sum())
    what = (
        f"all {len(chosen)} summary files"
        if subsets == "*"
        else f"{len(dict.fromkeys(subsets))} subsets, {len(chosen)} summary files"
    )
    return make_statistics(
        selections.reshape(layers, experts),
        mass.reshape(layers, experts),
        weight,
        tie_rank=tie_rank.reshape(layers, experts),
        tokens=round(tokens),
        source=f"fingerprints ({what}, {n_samples} samples)",
        where=table.origin,
    )


# ---------------------------------------------------------------- the packed copy


@lru_cache(maxsize=4)
def packed_index(folder: Path = PACKED_DIR) -> dict[str, Any]:
    """The packed copy's `index.json` (file list, sizes, payload digest)."""
    path = folder / INDEX
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HubbotError(f"{path}: cannot read the packed fingerprints: {exc}") from None
    if index.get("format") != FORMAT:
        raise HubbotError(f"{path}: not a packed fingerprint index")
    return index


def packed_subsets(folder: Path = PACKED_DIR) -> list[str]:
    """Subset names of the packed copy, without reading its payload."""
    return list(dict.fromkeys(f"{f[0]}" for f in packed_index(folder)["files"]))


@lru_cache(maxsize=4)
def packed_table(folder: Path = PACKED_DIR) -> FingerprintTable:
    """The packed copy (by default the one shipped with hubbot), checked against its digest."""
    index = packed_index(folder)
    path = folder / index["payload"]["file"]
    try:
        raw = lzma.decompress(path.read_bytes())
    except (OSError, lzma.LZMAError) as exc:
        raise HubbotError(f"{path}: cannot read the packed fingerprints: {exc}") from None
    if hashlib.sha256(raw).hexdigest() != index["payload"]["sha256"]:
        raise HubbotError(f"{path}: content does not match the digest in {INDEX}")
    try:
        arrays = load(raw)
    except SafetensorError as exc:
        raise HubbotError(f"{path}: {exc}") from None
    files = tuple(SummaryFile(*row) for row in index["files"])
    return _checked_table(
        files,
        arrays["lengths"],
        arrays["expert"].astype(np.int64),
        arrays["count_frequency"],
        arrays["prob_density"],
        index["num_experts"],
        str(folder),
    )


def write_packed(table: FingerprintTable, folder: Path, *, notice: str | None = None) -> Path:
    """Write `table` in the packed form (`index.json` + xz-compressed safetensors)."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = save(
        {
            "lengths": table.lengths.astype(np.int16),
            "expert": table.expert.astype(np.uint8 if table.num_experts <= 256 else np.uint16),
            "count_frequency": table.count_frequency.astype(np.float64),
            "prob_density": table.prob_density.astype(np.float64),
        }
    )
    (folder / PAYLOAD).write_bytes(lzma.compress(payload, preset=9 | lzma.PRESET_EXTREME))
    index = {
        "format": FORMAT,
        "version": 1,
        "num_layers": table.num_layers,
        "num_experts": table.num_experts,
        "payload": {"file": PAYLOAD, "sha256": hashlib.sha256(payload).hexdigest()},
        "columns": ["subset", "bucket", "sample_count", "think_tokens", "answer_tokens"],
        "files": [
            [f.subset, f.bucket, f.sample_count, f.think_tokens, f.answer_tokens]
            for f in table.files
        ],
    }
    if notice:
        index["notice"] = notice
    path = folder / INDEX
    path.write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------- the raw layout


def raw_map_path(folder: Path) -> Path:
    """`map.json` of a raw fingerprint folder (the study's top folder or its `summaries/`)."""
    for candidate in (folder / "summaries" / "map.json", folder / "map.json"):
        if candidate.is_file():
            return candidate
    raise InputError(f"{folder}: no summaries/map.json here (not a fingerprint folder)")


def raw_subsets(folder: Path) -> list[str]:
    """Subset names of a raw folder, from its map.json alone."""
    return [f"{b}/{c}" for b, cats in _read_json(raw_map_path(folder)).items() for c in cats]


@lru_cache(maxsize=4)
def raw_table(folder: Path, num_experts: int) -> FingerprintTable:
    """Read every summary file of a folder in the study's raw layout.

    `num_experts` is the base model's expert count: a listed expert outside it is an error.
    """
    map_path = raw_map_path(folder)
    root = map_path.parent
    files: list[SummaryFile] = []
    paths: list[Path] = []
    phases: list[list[dict[int, _Listed] | None]] = []
    for benchmark, categories in _mapping(_read_json(map_path), map_path).items():
        for category, buckets in _mapping(categories, map_path).items():
            for bucket, entry in _mapping(buckets, map_path).items():
                rel = _mapping(entry, map_path).get("summary_file_path")
                path = root / str(rel)
                if rel is None or not path.is_file():
                    raise InputError(f"{map_path}: summary file {path} does not exist")
                summary = _mapping(_read_json(path), path)
                count = summary.get("sample_count", entry.get("sample_count"))
                if not isinstance(count, int) or count < 0:
                    raise InputError(f"{path}: sample_count must be a whole number, got {count}")
                files.append(
                    SummaryFile(
                        f"{benchmark}/{category}",
                        bucket,
                        count,
                        _tokens(summary, "num_think_tokens", path),
                        _tokens(summary, "num_answer_tokens", path),
                    )
                )
                paths.append(path)
                phases.append([_phase(summary, p, path) for p in PHASES])
    return _pack_phases(files, paths, phases, num_experts, str(folder))


_Listed = list[tuple[str, Any, Any]]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON: {exc}") from None


def _mapping(value: Any, path: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def _tokens(summary: dict[str, Any], key: str, path: Path) -> float | None:
    value = summary.get(key)
    if value is not None and not (isinstance(value, int | float) and math.isfinite(value)):
        raise InputError(f"{path}: {key} must be a number, got {value!r}")
    return None if value is None else float(value)


def _phase(summary: dict[str, Any], phase: str, path: Path) -> dict[int, _Listed] | None:
    """One analytics block as layer -> [(expert key, count_frequency, prob_density)]."""
    analytics = summary.get(f"{phase}_expert_analytics")
    if not analytics:
        return None
    out: dict[int, _Listed] = {}
    for layer_key, listed in _mapping(analytics, path).items():
        match = _LAYER.fullmatch(layer_key)
        if not match:
            raise InputError(f"{path}: {phase} analytics: {layer_key!r} is not 'layer_<n>'")
        out[int(match.group(1))] = [
            (key, v.get("count_frequency"), v.get("prob_density"))
            if isinstance(v, dict)
            else (key, None, None)
            for key, v in _mapping(listed, path).items()
        ]
    return out


def _pack_phases(
    files: list[SummaryFile],
    paths: list[Path],
    phases: list[list[dict[int, _Listed] | None]],
    num_experts: int,
    origin: str,
) -> FingerprintTable:
    layers = 1 + max((max(p) for ps in phases for p in ps if p), default=-1)
    if layers == 0:
        raise InputError(f"{origin}: the summaries list no layers")
    lengths = np.full((len(files), 2, layers), -1, dtype=np.int16)
    flat: _Listed = []
    for f, per_phase in enumerate(phases):
        for p, by_layer in enumerate(per_phase):
            for layer in range(layers):
                if by_layer is not None and layer in by_layer:
                    lengths[f, p, layer] = len(by_layer[layer])
                    flat += by_layer[layer]
    keys, cf, pd = (list(c) for c in zip(*flat, strict=True)) if flat else ([], [], [])

    def where(i: int) -> str:
        ends = np.cumsum(np.maximum(lengths, 0).ravel())
        f, p, layer = np.unravel_index(np.searchsorted(ends, i, side="right"), lengths.shape)
        return f"{paths[f]}: {PHASES[p]} analytics, layer {layer}, expert {keys[i]!r}"

    index = {str(e): e for e in range(num_experts)}
    expert = np.array([index.get(k, -1) for k in keys], dtype=np.int64)
    if (expert < 0).any():
        bad = int(np.argmax(expert < 0))
        raise InputError(f"{where(bad)}: not an expert of the base model (0..{num_experts - 1})")
    columns = []
    for values in (cf, pd):
        numeric = [isinstance(v, int | float) and not isinstance(v, bool) for v in values]
        array = np.array([v if ok else np.nan for v, ok in zip(values, numeric, strict=True)])
        bad = np.flatnonzero(~np.isfinite(array) | (array < 0))
        if len(bad):
            raise InputError(
                f"{where(int(bad[0]))}: count_frequency and prob_density must be numbers >= 0"
            )
        columns.append(array.astype(np.float64))
    return _checked_table(
        tuple(files), lengths, expert, columns[0], columns[1], num_experts, origin
    )


def _checked_table(
    files: tuple[SummaryFile, ...],
    lengths: np.ndarray,
    expert: np.ndarray,
    count_frequency: np.ndarray,
    prob_density: np.ndarray,
    num_experts: int,
    origin: str,
) -> FingerprintTable:
    n = int(np.maximum(lengths, 0).sum())
    if lengths.shape[:2] != (len(files), 2) or not (
        len(expert) == len(count_frequency) == len(prob_density) == n
    ):
        raise HubbotError(f"{origin}: packed fingerprint arrays do not fit together")
    if n and int(expert.max()) >= num_experts:
        raise HubbotError(f"{origin}: expert {int(expert.max())} is out of range")
    for array in (lengths, expert, count_frequency, prob_density):
        array.setflags(write=False)
    return FingerprintTable(
        files, lengths, expert, count_frequency, prob_density, num_experts, origin
    )
