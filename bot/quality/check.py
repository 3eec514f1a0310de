"""Offline checks of a manifest's evaluation text, run when the manifest is loaded.

Each problem is a (path inside the manifest, message) pair, so the manifest can point at
the line. Checked: evaluation files exist and read as UTF-8; a quality floor has text to
be measured on; and evaluation text does not overlap the calibration text it would judge.
The general set is checked against every domain's calibration, a domain's own set against
its domain's. Overlap is: the same file, the same dataset split, or one line of 32
characters or more (whitespace collapsed, case ignored) found in both; a prompt shorter
than that overlaps when it equals a calibration text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.quality.spec import EvalTexts
from bot.selection.spec import CalibrationStatistics, DatasetTexts

if TYPE_CHECKING:
    from bot.manifest.schema import ManifestSpec

Where = tuple[str | int, ...]
Located = tuple[Where, str]
MIN_LINE = 32
"""Shortest line (normalized characters) that counts as shared text."""


@dataclass(frozen=True)
class _Item:
    """One text of a source: where the manifest names it, what to call it, its text."""

    where: Where
    name: str
    text: str | None  # None: a dataset, compared by its spec
    path: Path | None = None
    dataset: DatasetTexts | None = None


def check_evaluation(spec: ManifestSpec, base_dir: Path) -> list[Located]:
    """Problems with the manifest's evaluation text and floor."""
    problems: list[Located] = []
    has_text = (spec.evaluation and spec.evaluation.general) or any(
        d.evaluation for d in spec.domains
    )
    if spec.quality is not None:
        if not has_text:
            problems.append(
                (("quality",), "a quality floor needs evaluation text ('evaluation' sections)")
            )
        else:
            for i, domain in enumerate(spec.domains):
                if domain.evaluation is None:
                    problems.append(
                        (
                            ("domains", i),
                            f"domain {domain.id!r} needs 'evaluation' text: the quality "
                            "floor is measured on each domain's own text",
                        )
                    )
    if spec.evaluation is not None and not has_text:
        problems.append(
            (
                ("evaluation",),
                "no evaluation text: give 'evaluation.general' or a domain's 'evaluation'",
            )
        )
    general = spec.evaluation.general if spec.evaluation else None
    sources: list[tuple[Where, EvalTexts, list[int]]] = []
    if general is not None:
        sources.append((("evaluation", "general"), general, list(range(len(spec.domains)))))
    for i, domain in enumerate(spec.domains):
        if domain.evaluation is not None:
            sources.append((("domains", i, "evaluation"), domain.evaluation, [i]))
    for where, texts, against in sources:
        items, read_problems = _eval_items(where, texts, base_dir)
        problems += read_problems
        for i in against:
            domain = spec.domains[i]
            if isinstance(domain.statistics, CalibrationStatistics):
                calibration = _calibration_items(domain.statistics, base_dir, ("domains", i))
                problems += _overlaps(items, calibration, domain.id)
    return problems


def _eval_items(
    where: Where, texts: EvalTexts, base_dir: Path
) -> tuple[list[_Item], list[Located]]:
    items = [
        _Item((*where, "prompts", j), f"prompt {j + 1}", p) for j, p in enumerate(texts.prompts)
    ]
    problems: list[Located] = []
    for j, name in enumerate(texts.files):
        path = base_dir / name
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            problems.append(((*where, "files", j), f"evaluation file {name} does not exist"))
            continue
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(((*where, "files", j), f"evaluation file {name}: cannot read: {exc}"))
            continue
        items.append(_Item((*where, "files", j), f"file {name}", text, path=path.resolve()))
    if texts.dataset is not None:
        items.append(_Item((*where, "dataset"), "dataset", None, dataset=texts.dataset))
    return items, problems


def _calibration_items(spec: CalibrationStatistics, base_dir: Path, domain: Where) -> list[_Item]:
    where = (*domain, "statistics")
    items = [
        _Item((*where, "prompts", k), f"calibration prompt {k + 1}", p)
        for k, p in enumerate(spec.prompts)
    ]
    for k, name in enumerate(spec.files):
        path = base_dir / name
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = None  # the statistics check reports it when the model runs
        items.append(
            _Item((*where, "files", k), f"calibration file {name}", text, path=path.resolve())
        )
    if spec.dataset is not None:
        items.append(_Item((*where, "dataset"), "calibration dataset", None, dataset=spec.dataset))
    return items


def _overlaps(items: list[_Item], calibration: list[_Item], domain: str) -> list[Located]:
    problems: list[Located] = []
    lines = {}
    for cal in calibration:
        if cal.text is not None:
            for number, line in _long_lines(cal.text):
                lines.setdefault(line, (cal, number))
    for item in items:
        found = None
        for cal in calibration:
            if item.path is not None and item.path == cal.path:
                found = f"is {cal.name} itself"
            elif item.dataset is not None and _same_split(item.dataset, cal.dataset):
                found = f"is the same split as the {cal.name} ({item.dataset.split})"
            elif (
                item.text is not None
                and cal.text is not None
                and _norm(item.text) == _norm(cal.text)
            ):
                found = f"equals {cal.name}"
            if found:
                break
        if not found and item.text is not None:
            for number, line in _long_lines(item.text):
                if line in lines:
                    cal, cal_number = lines[line]
                    at = f" line {number}" if item.path else ""
                    found = f"shares{at} {_quote(line)} with {cal.name}" + (
                        f" (line {cal_number})" if cal.path else ""
                    )
                    break
        if found:
            problems.append(
                (
                    item.where,
                    f"evaluation {item.name} overlaps the calibration text of domain "
                    f"{domain!r}: it {found}; a variant must be judged on text its experts "
                    "were not chosen from",
                )
            )
    return problems


def _same_split(a: DatasetTexts, b: DatasetTexts | None) -> bool:
    if b is None:
        return False
    key = ("name", "config", "revision", "data_files", "split")
    return all(getattr(a, k) == getattr(b, k) for k in key)


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _long_lines(text: str) -> list[tuple[int, str]]:
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _norm(raw)
        if len(line) >= MIN_LINE:
            out.append((number, line))
    return out


def _quote(line: str) -> str:
    return repr(line if len(line) <= 40 else line[:37] + "...")
