"""Offline checks of a domain's statistics source, run when a manifest is loaded.

Each problem is a (path inside the domain's `statistics` block, message) pair, so the
manifest can point at the line. Checked: files and folders exist; fingerprint subsets
exist (with a did-you-mean) and are not listed twice; saved or raw statistics are readable
and have the base model's layer and expert counts. Calibration texts are only read when
the model runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.descriptors import descriptor_for
from bot.errors import HubbotError, InputError
from bot.selection.fingerprints import packed_index, raw_subsets, raw_table, unknown_subsets
from bot.selection.spec import (
    CalibrationStatistics,
    FileStatistics,
    FingerprintStatistics,
    StatisticsSpec,
)
from bot.selection.statistics import read_statistics, shape_problems

Located = tuple[tuple[str | int, ...], str]


def check_statistics(spec: StatisticsSpec, base_dir: Path, config: dict[str, Any]) -> list[Located]:
    """Problems with `spec` as (path inside the statistics block, message) pairs."""
    if isinstance(spec, FingerprintStatistics):
        return _check_fingerprints(spec, base_dir, config)
    if isinstance(spec, FileStatistics):
        path = base_dir / spec.path
        if not path.is_file():
            return [(("path",), f"statistics file {spec.path} does not exist")]
        try:
            stats = read_statistics(path)
        except InputError as exc:
            return [(("path",), str(exc))]
        return [(("path",), message) for message in shape_problems(stats, config)]
    assert isinstance(spec, CalibrationStatistics)
    problems: list[Located] = []
    for i, name in enumerate(spec.files):
        if not (base_dir / name).is_file():
            problems.append((("files", i), f"calibration file {name} does not exist"))
    for i, name in enumerate(spec.dataset.data_files if spec.dataset else []):
        if not (base_dir / name).exists():
            problems.append((("dataset", "data_files", i), f"data file {name} does not exist"))
    if not (spec.prompts or spec.files or spec.dataset):
        problems.append(((), "calibration needs 'prompts', 'files' or 'dataset'"))
    return problems


def _check_fingerprints(
    spec: FingerprintStatistics, base_dir: Path, config: dict[str, Any]
) -> list[Located]:

    if spec.path is not None and not (base_dir / spec.path).resolve().is_dir():
        return [(("path",), f"fingerprint folder {spec.path} does not exist")]
    descriptor = descriptor_for(config)
    experts = descriptor.num_experts(config)
    try:
        if spec.path is None:
            index = packed_index()
            known = list(dict.fromkeys(row[0] for row in index["files"]))
            shape = (index["num_layers"], index["num_experts"])
        else:
            folder = (base_dir / spec.path).resolve()
            if not folder.is_dir():
                return [(("path",), f"fingerprint folder {spec.path} does not exist")]
            known = raw_subsets(folder)
            table = raw_table(folder, experts)
            shape = (table.num_layers, experts)
    except (InputError, HubbotError) as exc:
        return [(("path",), str(exc))]
    problems: list[Located] = []
    layers = len(descriptor.moe_layer_indices(config))
    if shape[0] != layers:
        problems.append(((), f"the fingerprints have {shape[0]} layers, the base model {layers}"))
    if shape[1] != experts:
        problems.append(
            ((), f"the fingerprints have {shape[1]} experts per layer, the base model {experts}")
        )
    if spec.subsets == "*":
        return problems
    if not spec.subsets:
        problems.append((("subsets",), 'list at least one subset, or use "*" for all'))
    seen: set[str] = set()
    for i, name in enumerate(spec.subsets):
        if name in seen:
            problems.append((("subsets", i), f"subset {name!r} is listed twice"))
        seen.add(name)
    problems += [(("subsets", i), m) for i, m in unknown_subsets(spec.subsets, known)]
    return problems
