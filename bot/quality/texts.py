"""Evaluation text: read a text set, tokenize it, and cut it into scored windows.

A text set is cut into windows of at most `sequence_length` tokens, text by text (a window
never spans two texts); a window of `n` tokens scores `n - 1` next-token predictions. The
windows are taken in order until `tokens` predictions are scored, the last one cut short.
The digests name exactly what was read and scored, so a rerun can be checked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.errors import InputError

if TYPE_CHECKING:
    from bot.quality.spec import EvalTexts

GENERAL = "general"
"""Name of the text set every variant is measured on (a domain's set is named for it)."""


@dataclass(frozen=True)
class EvalSet:
    """One text set, tokenized: its windows and what they were made from."""

    name: str
    source: str
    windows: tuple[tuple[int, ...], ...]
    texts: int
    text_digest: str
    tokens_digest: str

    @property
    def tokens(self) -> int:
        """Scored next-token predictions."""
        return sum(len(w) - 1 for w in self.windows)


def read_texts(spec: EvalTexts, base_dir: Path) -> list[str]:
    """The texts of an evaluation source: prompts, then files, then the dataset column."""
    from bot.selection.calibrate import source_texts

    return source_texts(spec.prompts, spec.files, spec.dataset, base_dir, "evaluation")


def describe(spec: EvalTexts) -> str:
    """Where a text set comes from, in a few words (`2 prompts, 1 file, dataset x/test:text`)."""
    parts = []
    if spec.prompts:
        parts.append(f"{len(spec.prompts)} prompt{'s' if len(spec.prompts) > 1 else ''}")
    if spec.files:
        parts.append(", ".join(spec.files))
    if spec.dataset is not None:
        d = spec.dataset
        name = d.name + (f" ({d.config})" if d.config else "")
        parts.append(f"dataset {name}, split {d.split}, column {d.column}")
    return "; ".join(parts)


def make_set(
    name: str,
    source: str,
    texts: Sequence[str],
    tokenizer: Any,
    *,
    tokens: int,
    sequence_length: int,
) -> EvalSet:
    """Tokenize `texts` and cut them into windows holding `tokens` scored predictions."""
    windows: list[tuple[int, ...]] = []
    left = tokens
    for text in texts:
        ids = list(tokenizer(text)["input_ids"])
        for start in range(0, len(ids), sequence_length):
            window = ids[start : start + sequence_length]
            if len(window) < 2 or left <= 0:
                continue
            window = window[: left + 1]
            windows.append(tuple(window))
            left -= len(window) - 1
        if left <= 0:
            break
    if not windows:
        raise InputError(f"evaluation text {name!r} gives no window of two tokens or more")
    text_digest = _sha256(json.dumps(list(texts), ensure_ascii=False))
    tokens_digest = _sha256(json.dumps([list(w) for w in windows]))
    return EvalSet(name, source, tuple(windows), len(texts), text_digest, tokens_digest)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
