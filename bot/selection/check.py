"""Offline checks of a domain's statistics source, run when a manifest is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.selection.spec import (
    CalibrationStatistics,
    FileStatistics,
    FingerprintStatistics,
    StatisticsSpec,
)

Located = tuple[tuple[str | int, ...], str]


def check_statistics(spec: StatisticsSpec, base_dir: Path, config: dict[str, Any]) -> list[Located]:
    """Problems with `spec` as (path inside the statistics block, message) pairs."""
    problems: list[Located] = []
    if isinstance(spec, FileStatistics) and not (base_dir / spec.path).is_file():
        problems.append((("path",), f"statistics file {spec.path} does not exist"))
    if isinstance(spec, CalibrationStatistics):
        for i, name in enumerate(spec.files):
            if not (base_dir / name).is_file():
                problems.append((("files", i), f"calibration file {name} does not exist"))
        if not (spec.prompts or spec.files or spec.dataset):
            problems.append(((), "calibration needs 'prompts', 'files' or 'dataset'"))
    fingerprints = isinstance(spec, FingerprintStatistics) and spec.path is not None
    if fingerprints and not (base_dir / spec.path).is_dir():  # type: ignore[union-attr]
        problems.append((("path",), f"fingerprint folder {spec.path} does not exist"))
    return problems
